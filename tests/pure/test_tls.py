"""The serving endpoint's TLS in the pure layer: the names its certificate carries, how long certificates
live, and what a certificate and key brought in secret config must look like (real PEMs, made here).
"""

from __future__ import annotations

import datetime
import re

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from mlstack import rules, tls, validate
from mlstack.problems import format_problem

# --- real PEMs, as openssl or a CA hands them over ------------------------------------------


def _certificate(key: ec.EllipticCurvePrivateKey, name: str) -> str:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


EC_KEY = ec.generate_private_key(ec.SECP256R1())
CERTIFICATE = _certificate(EC_KEY, "ml.example.com")
INTERMEDIATE = _certificate(ec.generate_private_key(ec.SECP256R1()), "Example Intermediate CA")
PKCS8_KEY = EC_KEY.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
).decode()
EC_TRADITIONAL_KEY = EC_KEY.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
).decode()
RSA_KEY = (
    rsa.generate_private_key(public_exponent=65537, key_size=2048)
    .private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    .decode()
)
ENCRYPTED_KEY = EC_KEY.private_bytes(
    serialization.Encoding.PEM,
    serialization.PrivateFormat.PKCS8,
    serialization.BestAvailableEncryption(b"a passphrase"),
).decode()
LEGACY_ENCRYPTED_KEY = EC_KEY.private_bytes(
    serialization.Encoding.PEM,
    serialization.PrivateFormat.TraditionalOpenSSL,
    serialization.BestAvailableEncryption(b"a passphrase"),
).decode()
# What `openssl ecparam -name prime256v1 -genkey` writes: the curve's parameters, then the key.
EC_PARAMETERS = "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"


def _quotes(message: str, value: str) -> bool:
    """Whether ``message`` repeats a line of a PEM body from ``value`` (a secret)."""
    return any(line in message for line in value.splitlines() if len(line) > 8 and not line.startswith("-----"))


# --- the names on the server certificate --------------------------------------------------


def test_a_cloud_certificate_names_the_load_balancer_localhost_and_the_in_cluster_names() -> None:
    names = tls.certificate_names("digits", "ml", ["203.0.113.10"])
    assert names.ip_addresses == ("203.0.113.10", "127.0.0.1")
    assert names.dns_names == (
        "localhost", "digits", "digits.ml", "digits.ml.svc", "digits.ml.svc.cluster.local",
    )  # fmt: skip


def test_a_load_balancer_host_name_is_a_dns_name_and_an_ipv6_address_an_ip() -> None:
    names = tls.certificate_names("digits", "ml", ["lb-1.elb.example.com", "2001:db8::10", "lb-1.elb.example.com"])
    assert names.dns_names[0] == "lb-1.elb.example.com", "the load balancer's name comes first"
    assert names.dns_names.count("lb-1.elb.example.com") == 1, "a name is listed once"
    assert "2001:db8::10" in names.ip_addresses
    assert "2001:db8::10" not in names.dns_names


def test_without_an_external_address_only_localhost_and_the_in_cluster_names() -> None:
    names = tls.certificate_names("digits", "ml")
    assert names.ip_addresses == tls.LOCAL_IP_ADDRESSES == ("127.0.0.1",)
    assert names.dns_names == ("localhost", *tls.service_dns_names("digits", "ml"))


def test_certificates_renew_well_before_they_expire() -> None:
    for validity, early in (
        (tls.SERVER_VALIDITY_HOURS, tls.SERVER_EARLY_RENEWAL_HOURS),
        (tls.CA_VALIDITY_HOURS, tls.CA_EARLY_RENEWAL_HOURS),
    ):
        assert 0 < early < validity / 2, (validity, early)
    # The CA outlives every server certificate it signs, renewal window included.
    assert tls.CA_VALIDITY_HOURS - tls.CA_EARLY_RENEWAL_HOURS > tls.SERVER_VALIDITY_HOURS
    assert (tls.SERVER_VALIDITY_HOURS, tls.SERVER_EARLY_RENEWAL_HOURS) == (8760, 720)


# --- a certificate chain brought in secret config ------------------------------------------


@pytest.mark.parametrize("chain", [CERTIFICATE, CERTIFICATE + INTERMEDIATE, "subject=CN=ml\n" + CERTIFICATE])
def test_a_certificate_chain_is_accepted(chain: str) -> None:
    assert validate.pem_certificate_chain(chain) == chain


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("not a certificate", "must hold at least one PEM certificate (-----BEGIN CERTIFICATE-----"),
        (PKCS8_KEY, "holds a private key: put only the certificate chain here and the key in mlstack:tlsPrivateKey"),
        (CERTIFICATE + PKCS8_KEY, "holds a private key"),
        (CERTIFICATE.replace("-----END CERTIFICATE-----\n", ""), "-----BEGIN line without its matching -----END"),
        (CERTIFICATE.replace("M", "*", 3), "holds a CERTIFICATE block whose body is not base64"),
        ("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n", "holds an empty CERTIFICATE block"),
        (CERTIFICATE + EC_PARAMETERS, "must hold only CERTIFICATE blocks, not EC PARAMETERS"),
    ],
    ids=["text", "a-key", "chain-and-key", "unterminated", "not-base64", "empty", "other-block"],
)
def test_a_certificate_chain_is_refused_with_a_message_that_never_quotes_it(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as caught:
        validate.pem_certificate_chain(value)
    assert not _quotes(str(caught.value), value), "the message quotes the value"


# --- a private key brought in secret config -------------------------------------------------


@pytest.mark.parametrize("key", [PKCS8_KEY, EC_TRADITIONAL_KEY, RSA_KEY, EC_PARAMETERS + EC_TRADITIONAL_KEY])
def test_an_unencrypted_private_key_is_accepted(key: str) -> None:
    assert validate.pem_private_key(key) == key


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (ENCRYPTED_KEY, "is encrypted, and the server has no passphrase to open it"),
        (LEGACY_ENCRYPTED_KEY, "is encrypted"),
        (CERTIFICATE, "must hold exactly one PEM private key (-----BEGIN PRIVATE KEY-----"),
        (PKCS8_KEY + RSA_KEY, "must hold exactly one PEM private key"),
        (PKCS8_KEY + CERTIFICATE, "must hold only the private key, not CERTIFICATE"),
        ("", "found 0"),
    ],
    ids=["encrypted", "legacy-encrypted", "a-certificate", "two-keys", "key-and-certificate", "empty"],
)
def test_a_private_key_is_refused_with_a_message_that_never_quotes_it(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as caught:
        validate.pem_private_key(value)
    assert not _quotes(str(caught.value), value), "the message quotes the key"


# --- both or neither ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("certificate", "key", "missing", "given"),
    [(True, False, "tlsPrivateKey", "tlsCertificate"), (False, True, "tlsCertificate", "tlsPrivateKey")],
)
def test_a_certificate_comes_with_its_key(certificate: bool, key: bool, missing: str, given: str) -> None:
    (problem,) = rules.own_certificate(certificate, key)
    line = format_problem(problem)
    assert line.startswith(f"mlstack:{missing} must be set when mlstack:{given} is"), line
    assert "leave both empty and the stack makes its own CA" in line
    assert problem.show_value is False


@pytest.mark.parametrize("both", [True, False])
def test_both_or_neither_is_sound(both: bool) -> None:
    assert rules.own_certificate(both, both) == []
