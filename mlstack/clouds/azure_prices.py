"""Azure VM prices read live from the Azure Retail Prices API during preview and up; the table offline.

Pure: the AKS target asks for the two sizes it runs. "This API gives you an unauthenticated experience to get
retail rates for all Azure services", in USD, "Microsoft retail prices"
(https://learn.microsoft.com/rest/api/cost-management/retail-prices/azure-retail-prices): so no credential is
sent. Filter values are case-sensitive from 2023-01-01-preview (same page). Each call is bounded like every
other (mlstack.clouds.azure_api.get_json); a price that cannot be read is None, and the caller falls back to
mlstack.prices.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from mlstack.clouds import azure_api
from mlstack.prices import Price

ENDPOINT = "https://prices.azure.com/api/retail/prices"
API_VERSION = "2023-01-01-preview"
MAX_ANSWER_BYTES = 256 * 1024  # one size in one region: a few dozen meters (Linux, Windows, Spot, Low Priority)


def _retail(item: Mapping[str, Any]) -> Decimal | None:
    try:
        return Decimal(str(item.get("retailPrice")))
    except InvalidOperation:
        return None


def price_from_answer(answer: Any) -> Price | None:
    """A size's Linux price per hour on demand and as Spot, from the API's ``Items``; None when none is listed.

    Each Item is a meter: ``productName`` ends in "Windows" for Windows VMs, ``meterName`` ends in "Spot" or
    "Low Priority" for those priorities, ``unitOfMeasure`` is "1 Hour" for a VM's hourly rate and ``type`` is
    "Consumption" for pay-as-you-go.
    """
    items = answer.get("Items") if isinstance(answer, Mapping) else None
    if not isinstance(items, list):
        return None
    on_demand: list[Decimal] = []
    spot: list[Decimal] = []
    for item in items:
        if not isinstance(item, Mapping) or item.get("type") != "Consumption" or item.get("unitOfMeasure") != "1 Hour":
            continue
        if str(item.get("productName", "")).endswith("Windows"):
            continue
        meter, value = str(item.get("meterName", "")), _retail(item)
        if value is None or value <= 0 or meter.endswith("Low Priority"):
            continue
        (spot if meter.endswith("Spot") else on_demand).append(value)
    if not on_demand:
        return None
    return Price(min(on_demand), min(spot) if spot else None)


def retail_price(region: str, vm_size: str) -> Price | None:
    """The Linux pay-as-you-go price of ``vm_size`` in ``region`` now; None when the API lists none or fails."""
    query = (
        f"serviceName eq 'Virtual Machines' and armRegionName eq '{region}' and armSkuName eq '{vm_size}' "
        "and priceType eq 'Consumption'"
    )
    url = f"{ENDPOINT}?api-version={API_VERSION}&$filter={urllib.parse.quote(query)}"
    try:
        answer = azure_api.get_json(url, "", max_bytes=MAX_ANSWER_BYTES)
    except azure_api.ArmError:
        return None
    return price_from_answer(answer)


# What the program calls. The offline harness (tools/harness.py) puts its own answer here (None: no live
# price, the table decides), as it answers the providers' invokes.
vm_price: Callable[[str, str], Price | None] = retail_price
