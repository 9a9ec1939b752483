"""Mock answers for pulumi-tls: what making a key, a CA, a request and a signed certificate would report.

Registered in ``tools.harness.default_mocks``. Every answer is PEM-shaped (a
BEGIN line, a base64 body, an END line: what the program and a Secret expect)
and derived from what the provider was asked, never from a clock or a random
source, so two runs of one commit render the same bytes, and a changed request
(another name on the certificate, another CA) gives another certificate, as a
real signing would. A mock certificate's body is the JSON of what it certifies:
``decode`` reads it back, so a test can follow a name from the Service's
address to the certificate in the Secret.

The private keys come back as plain strings: the harness marks them secret as
the engine does, from the ``additional_secret_outputs`` the SDK registers them
with (``tools/harness.py``, RecordingMonitor).
"""

from __future__ import annotations

import base64
import hashlib
import json
import textwrap
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from pulumi.runtime import mocks as pulumi_mocks

from tools import pulumi_internals

PRIVATE_KEY = "tls:index/privateKey:PrivateKey"
SELF_SIGNED_CERT = "tls:index/selfSignedCert:SelfSignedCert"
CERT_REQUEST = "tls:index/certRequest:CertRequest"
LOCALLY_SIGNED_CERT = "tls:index/locallySignedCert:LocallySignedCert"

# Every mock certificate starts here: a fixed instant, so renders do not change from run to run.
ISSUED_AT = datetime(2026, 1, 1, tzinfo=UTC)


def pem(label: str, content: bytes) -> str:
    """A PEM block (RFC 7468) of ``content``, 64 base64 characters a line, ending in a newline as the provider's do."""
    body = "\n".join(textwrap.wrap(base64.b64encode(content).decode(), 64))
    return f"-----BEGIN {label}-----\n{body}\n-----END {label}-----\n"


def decode(block: str) -> dict[str, Any]:
    """What a mock certificate or request certifies (the JSON in its body)."""
    body = "".join(line for line in block.strip().splitlines() if not line.startswith("-----"))
    decoded: dict[str, Any] = json.loads(base64.b64decode(body))
    return decoded


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _unwrapped(value: Any) -> Any:
    """A mocked input as the provider sees it: a secret's value, not its marker."""
    if isinstance(value, dict) and value.get(pulumi_internals.SECRET_SIG_KEY) == pulumi_internals.SECRET_SIG:
        return value["value"]
    return value


def _public_key(private_key_pem: str) -> str:
    return pem("PUBLIC KEY", bytes.fromhex(_digest("public", private_key_pem)))


def _validity(args: pulumi_mocks.MockResourceArgs) -> dict[str, Any]:
    hours = int(args.inputs.get("validityPeriodHours") or 0)
    return {
        "validityStartTime": ISSUED_AT.isoformat().replace("+00:00", "Z"),
        "validityEndTime": (ISSUED_AT + timedelta(hours=hours)).isoformat().replace("+00:00", "Z"),
        "readyForRenewal": False,
        "earlyRenewalHours": int(args.inputs.get("earlyRenewalHours") or 0),
    }


def _private_key(args: pulumi_mocks.MockResourceArgs) -> dict[str, Any]:
    algorithm = args.inputs.get("algorithm") or "RSA"
    secret = bytes.fromhex(_digest("private", args.name, algorithm, args.inputs.get("ecdsaCurve")))
    private_key_pem = pem("PRIVATE KEY", secret)
    fingerprint = _digest("fingerprint", private_key_pem)
    return {
        "privateKeyPem": private_key_pem,
        "privateKeyPemPkcs8": private_key_pem,
        "privateKeyOpenssh": pem("OPENSSH PRIVATE KEY", secret),
        "publicKeyPem": _public_key(private_key_pem),
        "publicKeyOpenssh": f"ecdsa-sha2-nistp256 {base64.b64encode(secret).decode()}\n",
        "publicKeyFingerprintSha256": f"SHA256:{fingerprint[:43]}",
        "publicKeyFingerprintMd5": ":".join(fingerprint[i : i + 2] for i in range(0, 32, 2)),
    }


def _self_signed_cert(args: pulumi_mocks.MockResourceArgs) -> dict[str, Any]:
    certified = {
        "subject": args.inputs.get("subject") or {},
        "issuer": args.inputs.get("subject") or {},
        "isCa": bool(args.inputs.get("isCaCertificate")),
        "allowedUses": args.inputs.get("allowedUses") or [],
        "dnsNames": args.inputs.get("dnsNames") or [],
        "ipAddresses": args.inputs.get("ipAddresses") or [],
        "publicKey": _public_key(str(_unwrapped(args.inputs.get("privateKeyPem")))),
        "validityPeriodHours": args.inputs.get("validityPeriodHours"),
    }
    return {"certPem": pem("CERTIFICATE", json.dumps(certified, sort_keys=True).encode()), **_validity(args)}


def _cert_request(args: pulumi_mocks.MockResourceArgs) -> dict[str, Any]:
    requested = {
        "subject": args.inputs.get("subject") or {},
        "dnsNames": args.inputs.get("dnsNames") or [],
        "ipAddresses": args.inputs.get("ipAddresses") or [],
        "publicKey": _public_key(str(_unwrapped(args.inputs.get("privateKeyPem")))),
    }
    return {"certRequestPem": pem("CERTIFICATE REQUEST", json.dumps(requested, sort_keys=True).encode())}


def _locally_signed_cert(args: pulumi_mocks.MockResourceArgs) -> dict[str, Any]:
    request = decode(str(_unwrapped(args.inputs.get("certRequestPem"))))
    ca = decode(str(_unwrapped(args.inputs.get("caCertPem"))))
    certified = {
        **request,
        "issuer": ca["subject"],
        "isCa": bool(args.inputs.get("isCaCertificate")),
        "allowedUses": args.inputs.get("allowedUses") or [],
        "validityPeriodHours": args.inputs.get("validityPeriodHours"),
        "signedBy": _digest("ca", _unwrapped(args.inputs.get("caCertPem"))),
    }
    return {"certPem": pem("CERTIFICATE", json.dumps(certified, sort_keys=True).encode()), **_validity(args)}


OUTPUTS: dict[str, Callable[[pulumi_mocks.MockResourceArgs], dict[str, Any]]] = {
    PRIVATE_KEY: _private_key,
    SELF_SIGNED_CERT: _self_signed_cert,
    CERT_REQUEST: _cert_request,
    LOCALLY_SIGNED_CERT: _locally_signed_cert,
}
CALLS: dict[str, Callable[[pulumi_mocks.MockCallArgs], dict[str, Any]]] = {}
