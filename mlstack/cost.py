"""What a stack costs per hour, from mlstack.prices: idle (everything at its least) and at its largest, and a
training run's bound. Pure.

Every figure is a sum of priced items; an item the price table does not hold is named in ``unpriced`` and left
out of the sum, never guessed, so a total with anything unpriced is a floor and says so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

from mlstack import prices

HOURS_PER_MONTH = Decimal(730)  # the clouds' pricing pages convert monthly storage prices at 730 hours a month
GIB_PER_GB = Decimal(1024**3) / Decimal(10**9)  # storage is billed per GB; the store's size is in GiB
_CENT = Decimal("0.01")


@dataclass(frozen=True)
class Item:
    """One priced line: what it is and USD per hour (None: the table has no price for it)."""

    what: str
    hourly: Decimal | None
    # Nodes: without their price a total says nothing; a small fixed item missing leaves it a floor.
    essential: bool = False


@dataclass(frozen=True)
class Estimate:
    """A stack's cost per hour idle (``floor``) and at maximum scale (``ceiling``), item by item."""

    floor: tuple[Item, ...]
    ceiling: tuple[Item, ...]  # beyond the floor: the GPU pool's nodes up to gpuMaxNodes
    gpu_node_hourly: Decimal | None  # one GPU node, as the pool runs it (Spot or not)
    prices_read: date = prices.PRICES_READ
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def idle_per_hour(self) -> Decimal | None:
        """USD per hour at the least; None when a pool's nodes are unpriced."""
        return None if _unknown(self.floor) else _sum(self.floor)

    @property
    def max_per_hour(self) -> Decimal | None:
        """USD per hour at the largest; None when a pool's nodes are unpriced."""
        items = (*self.floor, *self.ceiling)
        return None if _unknown(items) else _sum(items)

    @property
    def unpriced(self) -> tuple[str, ...]:
        return tuple(item.what for item in (*self.floor, *self.ceiling) if item.hourly is None)

    def training_run(self, nodes: int, deadline_seconds: int) -> Decimal | None:
        """The most a training run can cost: ``nodes`` GPU nodes for the whole deadline; None if unpriced."""
        if self.gpu_node_hourly is None:
            return None
        return _cents(self.gpu_node_hourly * nodes * Decimal(deadline_seconds) / 3600)

    def outputs(self, nodes: int, deadline_seconds: int) -> dict[str, object]:
        """The stack output: figures in USD, rounded to the cent, with what is not in them."""
        run = self.training_run(nodes, deadline_seconds)
        idle, most = self.idle_per_hour, self.max_per_hour
        return {
            "currency": "USD",
            "idlePerHour": None if idle is None else float(_cents(idle)),
            "maxPerHour": None if most is None else float(_cents(most)),
            "trainingRunMax": None if run is None else float(run),
            "pricesRead": self.prices_read.isoformat(),
            "notIncluded": list(self.unpriced),
            "notes": list(self.notes),
        }

    def line(self, nodes: int, deadline_seconds: int) -> str:
        """One line for the preview."""
        run = self.training_run(nodes, deadline_seconds)
        missing = f"; not priced, so not included: {', '.join(self.unpriced)}" if self.unpriced else ""
        training = (
            f"a training run at most ${run} ({nodes} GPU node(s) for its {deadline_seconds}s deadline)"
            if run is not None
            else "a training run unpriced"
        )
        idle, most = self.idle_per_hour, self.max_per_hour
        if idle is None or most is None:
            return f"cost estimate: not made, a pool's machines have no price in mlstack.prices{missing}"
        return (
            f"cost estimate (prices of {self.prices_read.isoformat()}): ${_cents(idle)}/h idle, "
            f"up to ${_cents(most)}/h at maximum scale; {training}{missing}"
        )


def _unknown(items: Sequence[Item]) -> bool:
    return any(item.essential and item.hourly is None for item in items)


def _sum(items: Sequence[Item]) -> Decimal:
    return sum((item.hourly for item in items if item.hourly is not None), Decimal(0))


def _cents(value: Decimal) -> Decimal:
    return value.quantize(_CENT, rounding=ROUND_HALF_UP)


def _times(count: int, hourly: Decimal | None) -> Decimal | None:
    return None if hourly is None else hourly * count


def _storage_hourly(gb_month: Decimal | None, size_gib: Decimal) -> Decimal | None:
    return None if gb_month is None else gb_month * size_gib * GIB_PER_GB / HOURS_PER_MONTH


def _gpu_pool(machine: str, least: int, most: int, node: Decimal | None) -> tuple[list[Item], Item]:
    """The GPU pool's nodes kept up (in the floor, if any) and the ones it may add (the ceiling)."""
    kept = [Item(f"GPU pool: {least} x {machine} kept up", _times(least, node), essential=True)] if least else []
    return kept, Item(f"GPU pool: up to {most - least} more x {machine}", _times(most - least, node), essential=True)


# A price lookup the AKS target may answer live (the Azure Retail Prices API, mlstack.azure_prices), else the table.
MachinePrice = Callable[[str, str, bool], Decimal | None]  # (region, machine, spot) -> USD per hour


def estimate_gke(  # noqa: PLR0913 - the pools and the store as the stack's config gives them, keyword-only
    *,
    region: str,
    zonal: bool,
    zones: int,
    system_machine_type: str,
    system_nodes: int,
    gpu_machine_type: str,
    gpu_type: str,
    gpu_count: int,
    gpu_min_nodes: int,
    gpu_max_nodes: int,
    gpu_spot: bool,
    store_size_gib: Decimal,
) -> Estimate:
    """A GKE stack: its pools' nodes, the cluster fee, the load balancer's forwarding rule and the model bucket."""

    def node(machine: str, spot: bool) -> Decimal | None:
        vm = prices.hourly("gcp", region, machine, spot)
        if vm is None or not machine.startswith("n1-"):
            return vm
        gpu = prices.gpu_hourly("gcp", region, gpu_type, spot)  # N1 bills its GPUs apart
        return None if gpu is None else vm + gpu * gpu_count

    system_count = system_nodes * (1 if zonal else zones)
    gpu_node = node(gpu_machine_type, gpu_spot)
    kind = "Spot " if gpu_spot else ""
    system = _times(system_count, prices.hourly("gcp", region, system_machine_type))
    bucket = _storage_hourly(prices.GCS_STANDARD_GB_MONTH.get(region), store_size_gib)
    floor = [
        Item(f"system pool: {system_count} x {system_machine_type}", system, essential=True),
        Item("GKE cluster management fee", prices.GKE_CLUSTER_FEE_HOURLY),
        Item("load balancer forwarding rule", prices.GCP_FORWARDING_RULE_HOURLY),
        Item(f"model bucket ({store_size_gib} GiB, Standard)", bucket),
    ]
    kept, more = _gpu_pool(f"{kind}{gpu_machine_type}", gpu_min_nodes, gpu_max_nodes, gpu_node)
    floor += kept
    ceiling = [more]
    notes = ["the images' storage in Artifact Registry and network egress are not counted"]
    if zonal:
        notes.append(
            f"GKE's free tier credit (${prices.GKE_FREE_TIER_MONTHLY_CREDIT} a month per billing account) covers one "
            "zonal cluster's fee; it is counted here as paid"
        )
    return Estimate(tuple(floor), tuple(ceiling), gpu_node, notes=tuple(notes))


def estimate_aks(  # noqa: PLR0913 - the pools and the store as the stack's config gives them, keyword-only
    *,
    location: str,
    system_vm_size: str,
    system_nodes: int,
    gpu_vm_size: str,
    gpu_min_nodes: int,
    gpu_max_nodes: int,
    gpu_spot: bool,
    store_size_gib: Decimal,
    machine_price: MachinePrice | None = None,
) -> Estimate:
    """An AKS stack: its pools' nodes, the (free) control plane, the load balancer, registry and file share."""
    look = machine_price or (lambda region, machine, spot: prices.hourly("azure", region, machine, spot))
    gpu_node = look(location, gpu_vm_size, gpu_spot)
    kind = "Spot " if gpu_spot else ""
    share = _storage_hourly(prices.AZURE_FILES_STANDARD_LRS_GB_MONTH.get(location), store_size_gib)
    floor = [
        Item(
            f"system pool: {system_nodes} x {system_vm_size}",
            _times(system_nodes, look(location, system_vm_size, False)),
            essential=True,
        ),
        Item("AKS control plane (Free tier)", prices.AKS_FREE_TIER_HOURLY),
        Item("Standard Load Balancer", None),
        Item("Container Registry (Basic)", None),
        Item(f"model store ({store_size_gib} GiB, Azure Files standard LRS)", share),
    ]
    kept, more = _gpu_pool(f"{kind}{gpu_vm_size}", gpu_min_nodes, gpu_max_nodes, gpu_node)
    floor += kept
    ceiling = [more]
    notes = ["Azure Monitor's metrics ingestion and network egress are not counted"]
    if gpu_spot:
        notes.append("Spot prices move with the market; the table's are those of its read date")
    return Estimate(tuple(floor), tuple(ceiling), gpu_node, notes=tuple(notes))
