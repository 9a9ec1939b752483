"""What the public listener offers in its TLS handshake, judged by real handshakes with the server as its image
starts it: Mozilla's "intermediate" configuration (``mlapp.serve.server.tls_context``).

Bug: TLS 1.2 also offered ECDHE-ECDSA-AES128-SHA256 and ECDHE-ECDSA-AES256-SHA384 (AES-CBC, which sslyze reports as
not "intermediate"), since the context took Python's default cipher list.

Each client below offers one suite (or one group, or one protocol version) at OpenSSL security level 0, so that it
offers even what no client should and a refusal is the server's, never the client's own. The server runs
with the stack's own kind of certificate (ECDSA P-256: tools/devcert.py for the tests, pulumi-tls in a stack) and with
an RSA one, the kind a user may bring: a suite for the other kind of key is refused whatever the cipher list says, so
each is judged against the certificate that could serve it. These tests judge the offer, not the chain
(test_limits.py verifies the chain against the CA).
"""

from __future__ import annotations

import contextlib
import datetime
import socket
import ssl
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from mlapp.serve.server import TLS12_CIPHERS, TLS13_CIPHERS, tls_context
from tools.devcert import Certificates

from .helpers import Server, TrainedModel

# What OpenSSL answers a ClientHello it has no suite or version for (RFC 8446, 6.2: handshake_failure,
# protocol_version), as the client's OpenSSL names the alert it received.
HANDSHAKE_FAILURE = "SSLV3_ALERT_HANDSHAKE_FAILURE"
PROTOCOL_VERSION = "TLSV1_ALERT_PROTOCOL_VERSION"
# What the server process's refusal looks like instead: asyncio aborts the connection when the handshake fails
# without sending the alert OpenSSL wrote (Lib/asyncio/sslproto.py, SSLProtocol._on_handshake_complete calls
# _fatal_error, which aborts the transport), so the client reads the end of the stream.
DROPPED = "UNEXPECTED_EOF_WHILE_READING"
# Mozilla's "intermediate" groups that OpenSSL 3.0 implements (X25519MLKEM768 needs 3.5), by OpenSSL's names.
MOZILLA_GROUPS = ("X25519", "prime256v1", "secp384r1")
# The two suites the outside test found, which Python's default list offers.
CBC_SUITES_FOUND = ("ECDHE-ECDSA-AES128-SHA256", "ECDHE-ECDSA-AES256-SHA384")


@dataclass(frozen=True)
class Listener:
    port: int
    key: str  # "ECDSA" or "RSA": the server certificate's key, which a TLS 1.2 suite's authentication must match


@dataclass(frozen=True)
class Outcome:
    version: str | None  # None: refused
    cipher: str | None
    alert: str | None  # the reason the client's OpenSSL gives for a refusal

    @property
    def accepted(self) -> bool:
        return self.version is not None


def client(
    ciphers: str = "ALL:COMPLEMENTOFALL",
    versions: tuple[ssl.TLSVersion, ssl.TLSVersion] = (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2),
    group: str | None = None,
) -> ssl.SSLContext:
    """A client that offers exactly ``ciphers`` (TLS 1.2's; TLS 1.3's are OpenSSL's three), ``versions`` and, with
    ``group``, that one key-exchange group."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    # Level 0: the client offers SHA-1 MACs, NULL ciphers and TLS 1.0/1.1 too, so only the server can say no.
    context.set_ciphers(f"{ciphers}:@SECLEVEL=0")
    with warnings.catch_warnings():  # TLSVersion.TLSv1 and TLSv1_1 are deprecated: asking for them is the point
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version, context.maximum_version = versions
    if group is not None:
        # On OpenSSL 3, SSL_CTX_set1_groups with this one group: the client offers it alone.
        context.set_ecdh_curve(group)
    return context


def handshake(port: int, context: ssl.SSLContext) -> Outcome:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        try:
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                cipher = tls.cipher()
                return Outcome(tls.version(), cipher[0] if cipher else None, None)
        except ssl.SSLError as e:
            return Outcome(None, None, e.reason)


def tls12_suites() -> list[str]:
    """Every suite this machine's OpenSSL can offer in TLS 1.2, but those that need a pre-shared key or an SRP
    login, which no client of ours has."""
    context = client()
    return [
        c["name"]
        for c in context.get_ciphers()
        if not c["name"].startswith("TLS_") and not any(k in c["kea"] for k in ("psk", "srp"))
    ]


def rsa_certificate(where: Path) -> tuple[Path, Path]:
    """A self-signed RSA 2048 server certificate for loopback and its key, as PEM files."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    where.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = where / "tls.crt", where / "tls.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


@pytest.fixture(scope="module")
def rsa_server(trained: TrainedModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The server with an RSA certificate, as a user may bring one (README.md, "TLS")."""
    where = tmp_path_factory.mktemp("tls-rsa")
    srv = Server(where, trained.store, tls=rsa_certificate(where / "certificate"))
    try:
        srv.wait_for("/v2/health/ready")
        yield srv
    finally:
        srv.stop()


@pytest.fixture(params=["ECDSA", "RSA"])
def listener(request: pytest.FixtureRequest) -> Listener:
    """The public port of a server started as its image starts it, with an ECDSA P-256 or an RSA certificate."""
    server: Server = request.getfixturevalue("tls_server" if request.param == "ECDSA" else "rsa_server")
    return Listener(server.port, request.param)


@contextlib.contextmanager
def local_server(context: ssl.SSLContext) -> Iterator[int]:
    """A TLS server in this process on the port it yields, for the controls: OpenSSL's alerts reach the client here.
    It completes (or refuses) each handshake and closes the connection."""
    stop = threading.Event()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(0.05)

        def serve() -> None:
            while not stop.is_set():
                try:
                    conn, _ = listener.accept()
                except TimeoutError:
                    continue
                conn.settimeout(10)
                with conn, contextlib.suppress(OSError):  # ssl.SSLError is one: a refused handshake
                    context.wrap_socket(conn, server_side=True).close()

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            yield listener.getsockname()[1]
        finally:
            stop.set()
            thread.join(timeout=10)


# ---------------------------------------------------------------- TLS 1.2 suites


def test_tls12_accepts_exactly_mozillas_intermediate_suites(listener: Listener) -> None:
    suites = tls12_suites()
    assert set(TLS12_CIPHERS) <= set(suites), "this machine's OpenSSL cannot offer every suite the server should take"
    outcomes = {suite: handshake(listener.port, client(suite)) for suite in suites}
    accepted = {suite for suite, outcome in outcomes.items() if outcome.accepted}
    # Only the suites for this certificate's key; the other key's are refused for want of a certificate.
    expected = {suite for suite in TLS12_CIPHERS if f"-{listener.key}-" in suite}
    assert accepted == expected, f"{listener.key} certificate: accepted {sorted(accepted)}"
    for suite in expected:
        assert (outcomes[suite].version, outcomes[suite].cipher) == ("TLSv1.2", suite)
    refused_otherwise = {s: o.alert for s, o in outcomes.items() if not o.accepted and o.alert != DROPPED}
    assert refused_otherwise == {}, "refused other than by the server"
    # Among the refused: what the outside test named, and CBC, RSA key exchange, DHE, NULL and anonymous suites.
    refused = {"ECDHE-RSA-AES128-SHA256", "AES128-GCM-SHA256", "DHE-RSA-AES128-GCM-SHA256", "ECDHE-ECDSA-NULL-SHA"}
    assert {*CBC_SUITES_FOUND, *refused, "ADH-AES128-GCM-SHA256"} <= set(outcomes) - accepted


def test_the_cbc_suites_found_were_python_defaults_and_the_context_refuses_them(certificates: Certificates) -> None:
    """In this process, where OpenSSL's alert reaches the client: tls_context refuses the two suites the outside
    test found with handshake_failure, and, the control, a context on Python's defaults (what tls_context was)
    accepts them with the same certificate and client, so the client does offer them."""
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    old.load_cert_chain(certificates.cert, certificates.key)
    with local_server(old) as port:
        for suite in CBC_SUITES_FOUND:
            assert handshake(port, client(suite)) == Outcome("TLSv1.2", suite, None)
    with local_server(tls_context(str(certificates.cert), str(certificates.key))) as port:
        for suite in CBC_SUITES_FOUND:
            assert handshake(port, client(suite)) == Outcome(None, None, HANDSHAKE_FAILURE)


def test_the_client_chooses_among_the_suites(listener: Listener) -> None:
    """Mozilla's "server_preferred_order": false: all are strong, and a client without AES hardware takes ChaCha20."""
    ours = [suite for suite in TLS12_CIPHERS if f"-{listener.key}-" in suite]
    for first in ours:
        preference = [first, *(s for s in ours if s != first)]
        assert handshake(listener.port, client(":".join(preference))).cipher == first
        assert handshake(listener.port, client(":".join(reversed(preference)))).cipher == preference[-1]


# ---------------------------------------------------------------- versions, TLS 1.3, groups


def test_tls13_is_accepted(listener: Listener) -> None:
    outcome = handshake(listener.port, client(versions=(ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_3)))
    assert outcome.version == "TLSv1.3"
    assert outcome.cipher in TLS13_CIPHERS
    # A client that offers both takes 1.3.
    assert handshake(listener.port, client(versions=(ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3))).version == (
        "TLSv1.3"
    )


def test_the_context_holds_exactly_mozillas_suites(certificates: Certificates) -> None:
    """TLS 1.3's suites are OpenSSL's defaults, which Python cannot set: this fails if they ever stop being
    Mozilla's three."""
    context = tls_context(str(certificates.cert), str(certificates.key))
    assert sorted(c["name"] for c in context.get_ciphers()) == sorted({*TLS12_CIPHERS, *TLS13_CIPHERS})
    assert not context.options & ssl.OP_CIPHER_SERVER_PREFERENCE
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2


@pytest.mark.parametrize("version", ["TLSv1", "TLSv1_1"])
def test_tls_1_1_and_older_are_refused(listener: Listener, certificates: Certificates, version: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old = getattr(ssl.TLSVersion, version)
    assert handshake(listener.port, client(versions=(old, old))) == Outcome(None, None, DROPPED)
    # In this process the alert says why.
    with local_server(tls_context(str(certificates.cert), str(certificates.key))) as port:
        assert handshake(port, client(versions=(old, old))) == Outcome(None, None, PROTOCOL_VERSION)


@pytest.mark.parametrize("group", MOZILLA_GROUPS)
def test_mozillas_groups_are_accepted(listener: Listener, group: str) -> None:
    tls13 = handshake(listener.port, client(versions=(ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_3), group=group))
    assert tls13.version == "TLSv1.3", tls13
    # In TLS 1.2 a client's groups also name the curves it takes an ECDSA certificate on (RFC 8422, 5.1.1), so
    # a client offering X25519 or P-384 alone cannot take a P-256 certificate whatever the server does: the ECDSA
    # server is judged with P-256, the RSA one with each group.
    if listener.key == "RSA" or group == "prime256v1":
        tls12 = handshake(listener.port, client(group=group))
        assert tls12.version == "TLSv1.2", tls12
