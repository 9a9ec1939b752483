"""Throwaway certificates for `make serve` and the TLS tests: a CA, and a server certificate it signs for loopback.

    python -m tools.devcert DIR      keeps DIR/ca.crt, DIR/tls.crt, DIR/tls.key while they are good;
                                     makes what is missing, expired or not for loopback (valid 30 days)

Clients of a server started earlier trust DIR/ca.crt, so `make serve` keeps the CA
(and its server certificate) it made last time rather than making a new one each
start: a second server would otherwise break the first one's clients. Only what
is missing, expired within ``RENEW_BEFORE``, not signed by the CA or not for the
loopback names is made again.

Only for a laptop and tests: a stack makes its own CA with pulumi-tls, or serves
the certificate its user brings (README.md, "TLS").
"""

from __future__ import annotations

import datetime
import fcntl
import ipaddress
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeGuard

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# What `make serve` makes lasts this long; the tests' certificates one day.
SERVE_DAYS: Final = 30
# A certificate that ends within this is made again: a server started now should not see it expire.
RENEW_BEFORE: Final = datetime.timedelta(days=1)
CA_NAME: Final = "mlapp test CA"


@dataclass(frozen=True)
class Certificates:
    ca: Path  # the CA certificate a client trusts (what the stack exports as caCertificate)
    cert: Path  # the server's certificate
    key: Path  # the server's private key

    @property
    def ca_key(self) -> Path:
        """The CA's private key, kept beside it so that a new server certificate can be signed by the same CA."""
        return self.ca.with_name("ca.key")


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


# A certificate and its private key.
Signer = tuple[x509.Certificate, ec.EllipticCurvePrivateKey]


def _new_ca(now: datetime.datetime, days: int) -> Signer:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name(CA_NAME))
        .issuer_name(_name(CA_NAME))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    return ca, ca_key


def _sans(names: tuple[str, ...], ips: tuple[str, ...]) -> list[x509.GeneralName]:
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    return sans + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]


def _new_server(
    issuer: Signer, names: tuple[str, ...], ips: tuple[str, ...], now: datetime.datetime, days: int
) -> Signer:
    ca, ca_key = issuer
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(names[0]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        # Never past the CA's own end: a client refuses a chain whose CA has expired.
        .not_valid_after(min(now + datetime.timedelta(days=days), ca.not_valid_after_utc))
        .add_extension(x509.SubjectAlternativeName(_sans(names, ips)), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def _write(path: Path, data: bytes, *, private: bool = False) -> None:
    """Replace ``path`` whole (a reader never sees half a file); a private key is 0600 from its first byte."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(temporary, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def make_certificates(
    where: Path, names: tuple[str, ...] = ("localhost",), ips: tuple[str, ...] = ("127.0.0.1",), days: int = 1
) -> Certificates:
    """A new CA and a server certificate it signs for ``names`` and ``ips``, written into ``where``."""
    now = datetime.datetime.now(datetime.UTC)
    ca, ca_key = _new_ca(now, days)
    cert, key = _new_server((ca, ca_key), names, ips, now, days)
    where.mkdir(parents=True, exist_ok=True)
    out = Certificates(where / "ca.crt", where / "tls.crt", where / "tls.key")
    _write(out.ca_key, _key_pem(ca_key), private=True)
    _write(out.ca, ca.public_bytes(serialization.Encoding.PEM))
    _write(out.key, _key_pem(key), private=True)
    _write(out.cert, cert.public_bytes(serialization.Encoding.PEM))
    return out


def _good_until(cert: x509.Certificate, now: datetime.datetime) -> bool:
    return cert.not_valid_before_utc <= now and now + RENEW_BEFORE < cert.not_valid_after_utc


def _is_key_of(key: object, cert: x509.Certificate) -> TypeGuard[ec.EllipticCurvePrivateKey]:
    return isinstance(key, ec.EllipticCurvePrivateKey) and key.public_key() == cert.public_key()


def _kept_ca(out: Certificates, now: datetime.datetime) -> Signer | None:
    """The CA in ``out`` with its key, if both are there, belong together and stay valid past RENEW_BEFORE."""
    try:
        ca = x509.load_pem_x509_certificate(out.ca.read_bytes())
        ca_key = serialization.load_pem_private_key(out.ca_key.read_bytes(), password=None)
    except (OSError, ValueError):
        return None
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    if not constraints.ca or not _good_until(ca, now) or not _is_key_of(ca_key, ca):
        return None
    return ca, ca_key


def _kept_server(
    out: Certificates, ca: x509.Certificate, names: tuple[str, ...], ips: tuple[str, ...], now: datetime.datetime
) -> bool:
    """Whether the server certificate in ``out`` is the CA's, for exactly these names, with its key, still good."""
    try:
        cert = x509.load_pem_x509_certificate(out.cert.read_bytes())
        key = serialization.load_pem_private_key(out.key.read_bytes(), password=None)
        cert.verify_directly_issued_by(ca)
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return False
    wanted = set(_sans(names, ips))
    return set(sans) == wanted and _good_until(cert, now) and _is_key_of(key, cert)


def ensure_certificates(
    where: Path,
    names: tuple[str, ...] = ("localhost",),
    ips: tuple[str, ...] = ("127.0.0.1",),
    days: int = SERVE_DAYS,
) -> tuple[Certificates, str]:
    """The CA and server certificate in ``where``, kept when good, made when not; and what was done, in words.

    A lock on ``where/.lock`` makes two servers started at once agree on one CA.
    """
    where.mkdir(parents=True, exist_ok=True)
    out = Certificates(where / "ca.crt", where / "tls.crt", where / "tls.key")
    with (where / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        now = datetime.datetime.now(datetime.UTC)
        kept = _kept_ca(out, now)
        if kept is None:
            return make_certificates(where, names, ips, days), f"made a new CA {out.ca} and a server certificate"
        if _kept_server(out, kept[0], names, ips, now):
            return out, f"kept the CA {out.ca} and its server certificate {out.cert}"
        cert, key = _new_server(kept, names, ips, now, days)
        _write(out.key, _key_pem(key), private=True)
        _write(out.cert, cert.public_bytes(serialization.Encoding.PEM))
        return out, f"kept the CA {out.ca}; made a new server certificate {out.cert}"


if __name__ == "__main__":
    made, done = ensure_certificates(Path(sys.argv[1]))
    print(f"{done}; a client trusts {made.ca}")
