"""The cost estimate each stack exports (costEstimate) and prints in the preview, checked by hand from the table.

The hand calculations use the table's own rows (mlstack/prices.py), written out here: a change of a price,
or of what the estimate counts, fails these until the figures below are worked out again.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from mlstack import prices
from mlstack.clouds import azure, azure_prices
from mlstack.prices import Price
from tests.support import SharedRun
from tools import harness, mocks_azure

GIB_IN_GB = Decimal("1.073741824")


def cents(value: Decimal) -> float:
    return float(value.quantize(Decimal("0.01")))


def test_the_gke_stack_at_its_least_and_its_largest(shipped: dict[str, harness.StackRun]) -> None:
    """us-central1, zonal: 1 x e2-standard-4 (0.13402284/h), the cluster fee (0.10), one forwarding rule (0.025),
    a 5 GiB bucket (0.02 per GB-month over 730 h); at most 1 Spot n1-standard-4 (0.06701) with a Spot T4 (0.175)."""
    bucket = 5 * GIB_IN_GB * Decimal("0.02") / 730
    idle = Decimal("0.13402284") + Decimal("0.10") + Decimal("0.025") + bucket
    gpu_node = Decimal("0.06701") + Decimal("0.175")
    estimate = shipped["gke"].exports["costEstimate"]
    assert estimate["idlePerHour"] == cents(idle) == 0.26
    assert estimate["maxPerHour"] == cents(idle + gpu_node) == 0.50
    assert estimate["trainingRunMax"] == cents(gpu_node * 3600 / 3600) == 0.24  # 1 node, the 3600 s deadline
    assert estimate["notIncluded"] == []
    assert estimate["pricesRead"] == prices.PRICES_READ.isoformat()


def test_an_aks_stack_where_the_table_has_prices(shared_run: SharedRun) -> None:
    """westeurope: 1 x D4s_v5 (0.23/h) and a 5 GiB file share (0.06 per GB-month); at most 1 Spot NC4as_T4_v3
    (0.457113/h). The load balancer and the registry have no price in the table: named, not guessed."""
    share = 5 * GIB_IN_GB * Decimal("0.06") / 730
    estimate = shared_run("dev", {"azureLocation": "westeurope"}).exports["costEstimate"]
    assert estimate["idlePerHour"] == cents(Decimal("0.23") + share) == 0.23
    assert estimate["maxPerHour"] == cents(Decimal("0.23") + share + Decimal("0.457113")) == 0.69
    assert estimate["trainingRunMax"] == 0.46
    assert estimate["notIncluded"] == ["Standard Load Balancer", "Container Registry (Basic)"]


def test_where_the_table_has_no_price_the_estimate_says_so(shipped: dict[str, harness.StackRun]) -> None:
    """eastus is in no dated source the table was read from: no figure rather than a guess."""
    estimate = shipped["dev"].exports["costEstimate"]
    assert estimate["idlePerHour"] is estimate["maxPerHour"] is estimate["trainingRunMax"] is None
    assert "system pool: 1 x Standard_D4s_v5" in estimate["notIncluded"]


def test_azures_live_retail_price_is_used_where_it_answers(kubeconfig: object) -> None:
    mocks = harness.default_mocks()
    mocks.azure_prices = mocks_azure.AzurePrices(
        {
            ("eastus", "Standard_D4s_v5"): Price(Decimal("0.192"), Decimal("0.04")),
            ("eastus", "Standard_NC4as_T4_v3"): Price(Decimal("0.526"), Decimal("0.2104")),
        }
    )
    estimate = harness.run_stack("dev", mocks=mocks).exports["costEstimate"]
    assert estimate["idlePerHour"] == 0.19  # the file share in eastus is unpriced: named
    assert estimate["maxPerHour"] == cents(Decimal("0.192") + Decimal("0.2104")) == 0.40
    assert set(mocks.azure_prices.calls) == {("eastus", "Standard_D4s_v5"), ("eastus", "Standard_NC4as_T4_v3")}


def test_a_local_stack_has_no_cloud_cost(shipped: dict[str, harness.StackRun]) -> None:
    assert "costEstimate" not in shipped["local"].exports


def test_the_preview_line_names_what_is_not_priced() -> None:
    estimate = azure.estimate_aks(
        location="eastus",
        system_vm_size="Standard_D4s_v5",
        system_nodes=1,
        gpu_vm_size="Standard_NC4as_T4_v3",
        gpu_min_nodes=0,
        gpu_max_nodes=1,
        gpu_spot=True,
        store_size_gib=Decimal(5),
        machine_price=lambda _region, _machine, _spot: None,
    )
    line = estimate.line(1, 3600)
    assert line.startswith("cost estimate: not made, a pool's machines have no price")
    assert "Standard Load Balancer" in line


def meter(
    meter_name: str, price: float, product: str = "Virtual Machines NCasT4_v3 Series", **more: str
) -> dict[str, object]:
    """One Item of the Retail Prices API's answer (learn.microsoft.com/rest/api/cost-management/retail-prices)."""
    item = {"type": "Consumption", "unitOfMeasure": "1 Hour", "productName": product, "meterName": meter_name}
    return {**item, "retailPrice": price, **more}


LISTED = [
    meter("NC4as T4 v3", 0.526),
    meter("NC4as T4 v3 Spot", 0.2104),
    meter("NC4as T4 v3 Low Priority", 0.1),
    meter("NC4as T4 v3", 0.71, product="Virtual Machines NCasT4_v3 Series Windows"),
    meter("NC4as T4 v3", 0.3, type="DevTestConsumption"),
]


@pytest.mark.parametrize(
    ("answer", "expected"),
    [({"Items": LISTED}, Price(Decimal("0.526"), Decimal("0.2104"))), ({"Items": []}, None), ({"items": "x"}, None)],
)
def test_the_retail_answer_is_read_as_linux_pay_as_you_go(answer: object, expected: Price | None) -> None:
    """Meters as the Retail Prices API lists them: Windows, Low Priority and Dev/Test ones are not the pool's."""
    assert azure_prices.price_from_answer(answer) == expected
