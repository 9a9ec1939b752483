"""mlstack.validate: the parsers of single config values, as Kubernetes and the registries read them."""

from __future__ import annotations

from decimal import Decimal

import pytest

from mlstack import validate


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("500m", Decimal("0.5")),
        ("2", Decimal(2)),
        ("1Gi", Decimal(2**30)),
        ("256Mi", Decimal(256 * 2**20)),
        ("1.5G", Decimal("1.5e9")),
        ("1e3", Decimal(1000)),
        (".5", Decimal("0.5")),
    ],
)
def test_quantity_parses_kubernetes_notation(text: str, expected: Decimal) -> None:
    assert validate.quantity(text) == expected


@pytest.mark.parametrize("text", ["", "1 Gi", "1GB", "Gi", "-1", " 1", "1.2.3"])
def test_quantity_rejects_what_kubernetes_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=r"Kubernetes quantity"):
        validate.quantity(text)


@pytest.mark.parametrize(("text", "seconds"), [("75m", 4500), ("1h30m", 5400), ("90s", 90), ("1.5h", 5400)])
def test_duration(text: str, seconds: float) -> None:
    assert validate.duration_seconds(text) == seconds


@pytest.mark.parametrize("text", ["", "10", "10 m", "1d", "m", "0s"])
def test_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=r"duration|longer than zero"):
        validate.duration_seconds(text)


@pytest.mark.parametrize(
    "ref",
    [
        "localhost:5001/mlstack-server:dev",
        "myregistry.azurecr.io/mlstack/trainer:1.2.3",
        "europe-west4-docker.pkg.dev/my-project/mlstack/server:abc123",
        "ghcr.io/org/app@sha256:" + "a" * 64,
        "ghcr.io/org/app:1.0@sha256:" + "0" * 64,
        "nginx:1.27",
    ],
)
def test_image_reference_accepts(ref: str) -> None:
    assert validate.image_reference(ref) == ref


@pytest.mark.parametrize(
    "ref", ["nginx", "UPPER/case:1", "host:port:/x:1", "a//b:1", "x:" + "t" * 200, "https://ghcr.io/x:1"]
)
def test_image_reference_rejects(ref: str) -> None:
    with pytest.raises(ValueError, match=r"image reference|tag or a digest"):
        validate.image_reference(ref)


def test_cidr_normalises_and_accepts_ipv6() -> None:
    assert validate.cidr("203.0.113.0/24") == "203.0.113.0/24"
    assert validate.cidr("2001:db8::/32") == "2001:db8::/32"
    assert validate.cidr("198.51.100.7/32") == "198.51.100.7/32"
