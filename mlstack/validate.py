"""Pure validators for stack config values.

Each returns the parsed value or raises ``ValueError`` with a sentence saying
what is allowed; ``stack.config`` prefixes the key and the bad value and
collects every problem before failing.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from decimal import Decimal, InvalidOperation

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

# Kubernetes resource.Quantity: a decimal number, then a binary SI suffix, a
# decimal SI suffix or a decimal exponent.
_QUANTITY = re.compile(
    r"^(?P<number>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
    r"(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][-+]?[0-9]+)?$"
)
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
}

# Go's time.ParseDuration, restricted to what a Pulumi custom timeout needs.
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(h|m|s)")
_DURATION_UNITS = {"h": 3600, "m": 60, "s": 1}

# The distribution/reference grammar: [host[:port]/]path[:tag][@digest].
_HOST_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_HOST_COMPONENT}(?:\.{_HOST_COMPONENT})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE = re.compile(
    rf"^(?:(?P<host>{_HOST})/)?(?P<path>{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[a-f0-9]{64}))?$"
)

_K8S_VERSION = re.compile(r"^1\.(?P<minor>[0-9]{2})$")

# A PEM block (RFC 7468): a BEGIN line with a label, a base64 body, the END line with the same
# label. Text between blocks is allowed (RFC 7468 section 5.2: "explanatory text").
_PEM_BLOCK = re.compile(r"-----BEGIN (?P<label>[A-Z0-9 ]+)-----(?P<body>.*?)-----END (?P=label)-----", re.DOTALL)
_PEM_CERTIFICATE = "CERTIFICATE"
_PEM_PRIVATE_KEY = "PRIVATE KEY"  # the end of every private key label: PRIVATE KEY, RSA/EC PRIVATE KEY
_PEM_ENCRYPTED_KEY = "ENCRYPTED PRIVATE KEY"
# `openssl ecparam -genkey` writes the curve's parameters before the key; OpenSSL skips them.
_PEM_KEY_COMPANIONS = frozenset({"EC PARAMETERS"})


def dns1123_label(value: str, max_length: int = 63) -> str:
    """A Kubernetes name usable as a label value and a DNS label."""
    if len(value) > max_length:
        raise ValueError(f"must be at most {max_length} characters (got {len(value)})")
    if not _DNS1123_LABEL.match(value):
        raise ValueError(
            "must be a DNS-1123 label: lower-case letters, digits and '-', starting and ending with a letter or digit"
        )
    return value


def quantity(value: str) -> Decimal:
    """Parse a Kubernetes resource quantity ("500m", "1Gi", "2") to a Decimal."""
    match = _QUANTITY.match(value.strip()) if value.strip() == value else None
    if not match:
        raise ValueError(
            "must be a Kubernetes quantity such as 500m, 2, 256Mi or 1Gi "
            "(suffixes Ki Mi Gi Ti Pi Ei, n u m k M G T P E, or an exponent)"
        )
    number = Decimal(match["number"])
    suffix = match["suffix"] or ""
    if suffix in _BINARY:
        return number * _BINARY[suffix]
    if suffix in _DECIMAL:
        return number * _DECIMAL[suffix]
    if suffix:
        return number * Decimal(10) ** int(suffix[1:])
    return number


# Kubernetes counts memory in bytes, so a lower-case m is thousandths of a byte: "If you request 400m of
# memory, this is a request for 0.4 bytes. Someone who types that probably meant to ask for 400 mebibytes
# (400Mi) or 400 megabytes (400M)" (kubernetes.io/docs/concepts/configuration/manage-resources-containers,
# "Memory resource units"). Nothing a pod runs fits in less than a mebibyte either.
MIN_MEMORY_BYTES = 2**20
_SUB_BYTE = {"m": "thousandths", "u": "millionths", "n": "billionths"}


def memory_quantity(value: str) -> Decimal:
    """A memory or storage size: a positive quantity of at least 1Mi, with no sub-byte suffix."""
    size = positive_quantity(value)
    suffix = _QUANTITY.match(value)["suffix"] or ""  # type: ignore[index]  # positive_quantity matched it
    if suffix in _SUB_BYTE:
        number = value[: -len(suffix)]
        raise ValueError(
            f"is {size} bytes: a size counts bytes, and {suffix!r} means {_SUB_BYTE[suffix]}; for mebibytes "
            f"write {number}Mi (or {number}M for megabytes)"
        )
    if size < MIN_MEMORY_BYTES:
        raise ValueError(f"is {size} bytes; a size needs a unit such as Mi or Gi (e.g. {value}Mi)")
    return size


def positive_quantity(value: str) -> Decimal:
    parsed = quantity(value)
    if parsed <= 0:
        raise ValueError("must be greater than zero")
    return parsed


def duration_seconds(value: str) -> float:
    """Parse a Go-style duration ("75m", "1h30m", "90s") into seconds."""
    parts = _DURATION_PART.findall(value)
    if not value or "".join(n + u for n, u in parts) != value:
        raise ValueError("must be a duration such as 45m, 1h30m or 5400s (units h, m, s)")
    seconds = sum(float(number) * _DURATION_UNITS[unit] for number, unit in parts)
    if seconds <= 0:
        raise ValueError("must be longer than zero")
    return seconds


def image_reference(value: str) -> str:
    """A container image reference: [registry/]repository[:tag][@sha256:digest]."""
    if not value:
        raise ValueError("must be set to an image reference such as registry.example.com/team/server:1.0")
    match = _IMAGE.match(value)
    host = match["host"] if match else None
    # As in Docker: the first component is a registry only if it looks like a host.
    if host and not ("." in host or ":" in host or host == "localhost" or host.startswith("[")):
        match = match if re.fullmatch(_PATH_COMPONENT, host) else None
    if not match:
        raise ValueError(
            "must be an image reference [registry[:port]/]repository[:tag][@sha256:<64 hex>] "
            "with a lower-case repository"
        )
    if not match["tag"] and not match["digest"]:
        raise ValueError("must name a tag or a digest (an implicit :latest is not reproducible)")
    return value


def registry_address(value: str) -> str:
    """A registry host with an optional port, e.g. localhost:5001."""
    if not re.fullmatch(_HOST, value):
        raise ValueError("must be a registry host with an optional port, such as localhost:5001")
    return value


def cidr(value: str) -> str:
    """An IPv4 or IPv6 network in CIDR notation with no host bits set."""
    if "/" not in value:
        raise ValueError("must be a CIDR with a prefix length, such as 203.0.113.7/32")
    try:
        return ipaddress.ip_network(value, strict=True).with_prefixlen
    except ValueError as e:
        try:
            network = ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise ValueError("must be a CIDR such as 203.0.113.0/24 or 2001:db8::/32") from e
        raise ValueError(f"has host bits set; the network is {network.with_prefixlen}") from e


def unit_interval(value: str, *, open_low: bool = False) -> float:
    """A decimal number in [0, 1], or (0, 1] with ``open_low``."""
    try:
        number = Decimal(value)
    except InvalidOperation as e:
        raise ValueError("must be a decimal number such as 0.95") from e
    low_ok = number > 0 if open_low else number >= 0
    if not number.is_finite() or not low_ok or number > 1:
        raise ValueError("must be a number in (0, 1]" if open_low else "must be a number in [0, 1]")
    return float(number)


def requests_in_flight(value: str) -> float:
    """A positive decimal number of requests, at most 100000 (a replica's target load: mlstack:serverTargetInFlight)."""
    try:
        number = Decimal(value)
    except InvalidOperation as e:
        raise ValueError("must be a decimal number of requests such as 4 or 0.5") from e
    if not number.is_finite() or number <= 0 or number > 100_000:  # noqa: PLR2004 - the bound the message names
        raise ValueError("must be a number of requests above 0 and at most 100000")
    return float(number)


# The oldest Kubernetes the stack's objects run on: the servers' preStop hook is a sleep action, on by
# default from v1.30 ("Starting from Kubernetes v1.30, the original Sleep action for preStop and
# postStart hooks is enabled by default", kubernetes.io/blog/2025/05/14/kubernetes-v1-33-updates-to-
# container-lifecycle; KEP-3960: alpha 1.29, beta 1.30, GA 1.34), and the Jobs' pod failure policy is
# on by default from 1.26 (GA 1.31). Older schemas reject the objects outright (tools/render.py).
MIN_KUBERNETES_MINOR = 30


def kubernetes_version(value: str) -> str:
    """A Kubernetes minor such as "1.36", no older than MIN_KUBERNETES_MINOR."""
    match = _K8S_VERSION.match(value)
    if match is None:
        if re.fullmatch(r"1\.[0-9]", value):
            # YAML reads an unquoted 1.30 as the number 1.3.
            raise ValueError(
                f"is not a Kubernetes minor version: an unquoted {value}0 in YAML is the number {value}; "
                f'quote it: "{value}0"'
            )
        raise ValueError('must be a Kubernetes minor version such as "1.36" (quoted), or empty to follow the cloud')
    if int(match["minor"]) < MIN_KUBERNETES_MINOR:
        raise ValueError(
            f"is older than 1.{MIN_KUBERNETES_MINOR}, the oldest Kubernetes the stack's objects run on (the "
            f"servers' preStop sleep action is on by default from 1.{MIN_KUBERNETES_MINOR})"
        )
    return value


def int_range(value: int, low: int, high: int | None = None) -> int:
    if value < low or (high is not None and value > high):
        allowed = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ValueError(f"must be {allowed}")
    return value


def _pem_labels(value: str) -> list[str]:
    """The label of every PEM block in ``value``; ValueError for a block whose body is not base64.

    Messages never quote the value: these values are secrets.
    """
    blocks = list(_PEM_BLOCK.finditer(value))
    if value.count("-----BEGIN ") != len(blocks):
        raise ValueError("holds a -----BEGIN line without its matching -----END line")
    labels = []
    for block in blocks:
        label, body = block["label"], block["body"]
        if "Proc-Type:" in body and "ENCRYPTED" in body:  # OpenSSL's legacy form: Proc-Type: 4,ENCRYPTED
            labels.append(_PEM_ENCRYPTED_KEY)
            continue
        try:
            decoded = base64.b64decode("".join(body.split()), validate=True)
        except binascii.Error as e:
            raise ValueError(f"holds a {label} block whose body is not base64") from e
        if not decoded:
            raise ValueError(f"holds an empty {label} block")
        labels.append(label)
    return labels


def pem_certificate_chain(value: str) -> str:
    """A PEM certificate chain: the server's certificate first, then any intermediates; no key."""
    labels = _pem_labels(value)
    if any(label.endswith(_PEM_PRIVATE_KEY) for label in labels):
        raise ValueError(
            "holds a private key: put only the certificate chain here and the key in mlstack:tlsPrivateKey"
        )
    if _PEM_CERTIFICATE not in labels:
        raise ValueError(
            "must hold at least one PEM certificate (-----BEGIN CERTIFICATE----- ... -----END CERTIFICATE-----): "
            "the server's certificate first, then any intermediates"
        )
    others = sorted({label for label in labels if label != _PEM_CERTIFICATE})
    if others:
        raise ValueError(f"must hold only CERTIFICATE blocks, not {', '.join(others)}")
    return value


def pem_private_key(value: str) -> str:
    """One unencrypted PEM private key (PKCS#8 PRIVATE KEY, or RSA/EC PRIVATE KEY), nothing else."""
    labels = _pem_labels(value)
    if _PEM_ENCRYPTED_KEY in labels:
        raise ValueError(
            "is encrypted, and the server has no passphrase to open it: store the key decrypted "
            "(e.g. `openssl pkey -in key.pem -out key-decrypted.pem`)"
        )
    keys = [label for label in labels if label.endswith(_PEM_PRIVATE_KEY)]
    if len(keys) != 1:
        raise ValueError(
            "must hold exactly one PEM private key (-----BEGIN PRIVATE KEY-----, or RSA PRIVATE KEY or "
            f"EC PRIVATE KEY), found {len(keys)}"
        )
    others = sorted({label for label in labels if not label.endswith(_PEM_PRIVATE_KEY)} - _PEM_KEY_COMPANIONS)
    if others:
        raise ValueError(
            f"must hold only the private key, not {', '.join(others)}: the certificate chain goes in "
            "mlstack:tlsCertificate"
        )
    return value
