"""tools/devcert.py: `make serve`'s CA is kept between starts, and only what is no longer good is made again.

Bug: each `make serve` made a new CA in build/tls, so the clients of a server started earlier (which trust
the build/tls/ca.crt of their day) could no longer verify it once a second server had started.
"""

from __future__ import annotations

import datetime
import subprocess
import sys
from pathlib import Path

from cryptography import x509

from tools import devcert
from tools.devcert import Certificates, ensure_certificates, make_certificates

ROOT = Path(__file__).resolve().parents[2]


def contents(made: Certificates) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (made.ca, made.ca_key, made.cert, made.key)}


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_a_second_start_keeps_the_ca_and_the_server_certificate(tmp_path: Path) -> None:
    first, done = ensure_certificates(tmp_path / "tls")
    assert done.startswith("made a new CA")
    before = contents(first)
    second, done = ensure_certificates(tmp_path / "tls")
    assert done == f"kept the CA {first.ca} and its server certificate {first.cert}"
    assert contents(second) == before
    for key in (second.key, second.ca_key):
        assert key.stat().st_mode & 0o777 == 0o600, key
    cert, ca = load(second.cert), load(second.ca)
    cert.verify_directly_issued_by(ca)
    lasts = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert lasts >= datetime.timedelta(days=devcert.SERVE_DAYS), "a server started today still verifies next week"


def test_the_command_make_serve_runs_keeps_it_too(tmp_path: Path) -> None:
    where = tmp_path / "tls"
    runs = [
        subprocess.run(
            [sys.executable, "-m", "tools.devcert", str(where)], cwd=ROOT, capture_output=True, text=True,
            check=True, timeout=60,
        )
        for _ in range(2)
    ]  # fmt: skip
    assert runs[0].stdout.startswith("made a new CA")
    assert runs[1].stdout == f"kept the CA {where / 'ca.crt'} and its server certificate {where / 'tls.crt'}; " + (
        f"a client trusts {where / 'ca.crt'}\n"
    )


def test_a_ca_about_to_expire_is_made_again(tmp_path: Path) -> None:
    old = make_certificates(tmp_path / "tls", days=1)  # ends within RENEW_BEFORE
    ca_before = old.ca.read_bytes()
    new, done = ensure_certificates(tmp_path / "tls")
    assert done.startswith("made a new CA")
    assert new.ca.read_bytes() != ca_before
    load(new.cert).verify_directly_issued_by(load(new.ca))


def test_a_ca_without_its_key_is_made_again(tmp_path: Path) -> None:
    """What an older devcert left: ca.crt without ca.key, with which no new server certificate can be signed."""
    old, _ = ensure_certificates(tmp_path / "tls")
    old.ca_key.unlink()
    _, done = ensure_certificates(tmp_path / "tls")
    assert done.startswith("made a new CA")


def test_a_server_certificate_for_other_names_is_made_again_by_the_same_ca(tmp_path: Path) -> None:
    old, _ = ensure_certificates(tmp_path / "tls")
    ca_before, cert_before = old.ca.read_bytes(), old.cert.read_bytes()
    new, done = ensure_certificates(tmp_path / "tls", names=("localhost", "laptop.example"))
    assert done == f"kept the CA {old.ca}; made a new server certificate {old.cert}"
    assert new.ca.read_bytes() == ca_before, "the clients' CA is the same"
    assert new.cert.read_bytes() != cert_before
    cert = load(new.cert)
    cert.verify_directly_issued_by(load(new.ca))
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost", "laptop.example"]


def test_a_server_certificate_another_ca_signed_is_made_again(tmp_path: Path) -> None:
    ours, _ = ensure_certificates(tmp_path / "tls")
    theirs = make_certificates(tmp_path / "other", days=devcert.SERVE_DAYS)
    ours.cert.write_bytes(theirs.cert.read_bytes())
    ours.key.write_bytes(theirs.key.read_bytes())
    _, done = ensure_certificates(tmp_path / "tls")
    assert done == f"kept the CA {ours.ca}; made a new server certificate {ours.cert}"
    load(ours.cert).verify_directly_issued_by(load(ours.ca))
