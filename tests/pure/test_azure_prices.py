"""Azure's live retail prices, against a loopback server: the request carries no credential, the answer is read,
and a failure falls back (None) instead of stopping the run."""

from __future__ import annotations

import json
import urllib.parse
from decimal import Decimal
from typing import Any

import pytest

from mlstack.clouds import azure_prices
from mlstack.prices import Price
from tests.pure.test_azure_api import reply, resource_manager

ANSWER: dict[str, Any] = {
    "Items": [
        {"type": "Consumption", "unitOfMeasure": "1 Hour", "productName": "Virtual Machines Dsv5 Series",
         "meterName": "D4s v5", "retailPrice": 0.192, "armSkuName": "Standard_D4s_v5", "armRegionName": "eastus"},
        {"type": "Consumption", "unitOfMeasure": "1 Hour", "productName": "Virtual Machines Dsv5 Series",
         "meterName": "D4s v5 Spot", "retailPrice": 0.0384, "armSkuName": "Standard_D4s_v5", "armRegionName": "eastus"},
    ],
    "NextPageLink": None,
    "Count": 2,
}  # fmt: skip


def test_a_size_is_asked_without_credentials_and_read(monkeypatch: pytest.MonkeyPatch) -> None:
    with resource_manager([reply(200, json.dumps(ANSWER).encode())]) as (url, seen):
        monkeypatch.setattr(azure_prices, "ENDPOINT", url + "/api/retail/prices")
        found = azure_prices.retail_price("eastus", "Standard_D4s_v5")
    assert found == Price(Decimal("0.192"), Decimal("0.0384"))
    ((path, headers),) = seen
    assert "Authorization" not in headers
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
    assert query["api-version"] == [azure_prices.API_VERSION]
    assert query["$filter"] == [
        "serviceName eq 'Virtual Machines' and armRegionName eq 'eastus' and armSkuName eq 'Standard_D4s_v5' "
        "and priceType eq 'Consumption'"
    ]


@pytest.mark.parametrize("status", [400, 404, 503])
def test_an_api_that_fails_gives_no_price_and_the_table_decides(monkeypatch: pytest.MonkeyPatch, status: int) -> None:
    with resource_manager([reply(status, b"{}")]) as (url, _):
        monkeypatch.setattr(azure_prices, "ENDPOINT", url)
        assert azure_prices.retail_price("eastus", "Standard_D4s_v5") is None


def test_an_answer_too_large_gives_no_price(monkeypatch: pytest.MonkeyPatch) -> None:
    big = json.dumps({"Items": [ANSWER["Items"][0]] * 2000}).encode()
    assert len(big) > azure_prices.MAX_ANSWER_BYTES
    with resource_manager([reply(200, big)]) as (url, _):
        monkeypatch.setattr(azure_prices, "ENDPOINT", url)
        assert azure_prices.retail_price("eastus", "Standard_D4s_v5") is None
