"""What a stack costs per hour, from mlstack.prices: idle (everything at its least) and at its largest, and a
training run's bound. Pure.

Every figure is a sum of priced items; an item the price table does not hold is named in ``unpriced`` and left
out of the sum, never guessed, so a total with anything unpriced is a floor and says so. Each cloud's module in
``mlstack/clouds/`` sums its own stack's items (its ``estimate_*``) from these.
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


def times(count: int, hourly: Decimal | None) -> Decimal | None:
    """``count`` of an item at ``hourly``; None when it is unpriced."""
    return None if hourly is None else hourly * count


def storage_hourly(gb_month: Decimal | None, size_gib: Decimal) -> Decimal | None:
    """``size_gib`` of storage priced per GB-month, per hour; None when it is unpriced."""
    return None if gb_month is None else gb_month * size_gib * GIB_PER_GB / HOURS_PER_MONTH


def gpu_pool_items(machine: str, least: int, most: int, node: Decimal | None) -> tuple[list[Item], Item]:
    """The GPU pool's nodes kept up (in the floor, if any) and the ones it may add (the ceiling)."""
    kept = [Item(f"GPU pool: {least} x {machine} kept up", times(least, node), essential=True)] if least else []
    return kept, Item(f"GPU pool: up to {most - least} more x {machine}", times(most - least, node), essential=True)


# A price lookup a cloud's estimate may be handed: on AKS, Azure's live retail prices (mlstack.clouds.azure_prices),
# else the table.
MachinePrice = Callable[[str, str, bool], Decimal | None]  # (region, machine, spot) -> USD per hour
