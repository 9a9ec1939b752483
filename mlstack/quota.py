"""Will the cloud let the stack create its nodes? The quotas a stack needs, against the quotas a region has.

Pure (no Pulumi SDK). A pool the quota cannot hold does not fail at `pulumi up` with a clear message:
AKS fails the node pool with QuotaExceeded after minutes, and an autoscaled GPU pool on either cloud
simply never gets its node while the training Job waits. So before it creates anything the target asks
the cloud for the region's quotas (each cloud's API module in ``mlstack/clouds/``), computes what its
pools may use at their largest (the cloud's module: ``Needs``), and names every quota that is short
(``shortfalls``, ``message``), with where to ask for more (the cloud's ``Increase``).

The judgement is ``free = limit - usage`` against the sum of the needs on one quota. A quota the
region's answer does not list is reported as not judged, never as a shortfall: Azure lists a VM family
only where it is offered, and Compute Engine's regions.get leaves out some families' quotas altogether
(A3 and G2 among them), so an absent name says nothing about the limit. Research notes and the
unverified names are in the comments beside each cloud's tables (mlstack/clouds/).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

# --- what a cloud answers ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Quota:
    """One quota of a region: its name as the API spells it, the limit, what is in use, and a readable label."""

    metric: str
    limit: float
    usage: float
    label: str = ""

    @property
    def free(self) -> float:
        return self.limit - self.usage


@dataclass(frozen=True)
class Need:
    """What the stack may use of one quota at its largest, and why (for the message).

    ``instead`` is for GCP's Spot VMs, which count against the preemptible quota (``metric``) only where the
    project has been granted one, and against the standard quota (``instead``) otherwise.
    """

    metric: str
    amount: int
    why: str
    instead: str = ""


@dataclass(frozen=True)
class Needs:
    """The needs of a stack's pools, and what could not be counted (a size whose vCPUs or family are unknown)."""

    needs: tuple[Need, ...]
    uncounted: tuple[str, ...] = ()


@dataclass(frozen=True)
class Shortfall:
    """A quota the needs do not fit in, or (``quota`` None) one the region's answer does not list."""

    metric: str  # the quota judged: a need's metric, or its ``instead``
    needs: tuple[Need, ...]
    quota: Quota | None

    @property
    def amount(self) -> int:
        return sum(need.amount for need in self.needs)

    @property
    def found(self) -> bool:
        return self.quota is not None


def metric_key(name: str) -> str:
    """A quota name for matching: Azure spells one family "standardNCASv3_T4Family", "StandardNCASv3_T4Family"
    and, as a Resource SKU family, "Standard NCASv3_T4 Family"; GCP's metrics are upper case."""
    return name.replace(" ", "").lower()


def shortfalls(needs: Iterable[Need], quotas: Iterable[Quota]) -> list[Shortfall]:
    """The quotas the needs do not fit in, in the order first needed; needs on one quota are summed.

    A quota the answer lacks comes back with ``quota`` None: not judged, and never a reason to stop.
    """
    by_key = {metric_key(quota.metric): quota for quota in quotas}
    grouped: dict[str, list[Need]] = {}
    for need in needs:
        if need.amount > 0:
            grouped.setdefault(_judged(need, by_key), []).append(need)
    found: list[Shortfall] = []
    for metric, group in grouped.items():
        quota = by_key.get(metric_key(metric))
        total = sum(need.amount for need in group)
        if quota is None or total > quota.free:
            found.append(Shortfall(quota.metric if quota else metric, tuple(group), quota))
    return found


def _judged(need: Need, by_key: dict[str, Quota]) -> str:
    """The quota a need counts against: its own, or for a GCP Spot need without preemptible quota, ``instead``."""
    if not need.instead:
        return need.metric
    preemptible = by_key.get(metric_key(need.metric))
    return need.metric if preemptible is not None and preemptible.limit > 0 else need.instead


# --- the message ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Increase:
    """How to ask a cloud for more quota, as the message says it: what to do, why its answer may lack a quota,
    and the command that asks for one."""

    how: str  # the paragraph before the commands
    not_listed: str  # why the answer may list no such quota, with {where}
    command: Callable[[str, float, str, str], str]  # (metric, limit, where, account) -> what asks for it


def verdict(needs: Needs, quotas: Iterable[Quota], increase: Increase, where: str, account: str) -> tuple[bool, str]:
    """Whether ``needs`` fit ``quotas`` (a quota the answer lacks never stops them), and what to say either way:
    the shortfalls and how to ask for more, or what was not judged (empty when everything was)."""
    found = shortfalls(needs.needs, quotas)
    return not any(s.found for s in found), message(found, increase, where, account=account, uncounted=needs.uncounted)


def message(
    found: Sequence[Shortfall],
    increase: Increase,
    where: str,
    *,
    account: str = "",
    uncounted: Sequence[str] = (),
) -> str:
    """What is short in ``where`` and how to ask for more, then what was not judged; empty when all fits.

    ``account`` is the subscription (Azure) or project (GCP) the commands name.
    """
    short = [(s, s.quota) for s in found if s.quota is not None]
    absent = [s for s in found if s.quota is None]
    lines: list[str] = []
    if short:
        lines.append(f"Too little quota in {where} for what this stack may run at its largest:")
        lines += [f"  - {_short_line(s, quota)}" for s, quota in short]
        lines.append(increase.how)
        lines += [f"    {increase.command(s.metric, quota.usage + s.amount, where, account)}" for s, quota in short]
    if absent:
        lines.append(
            f"Not judged, as the answer for {where} lists no such quota; {increase.not_listed.format(where=where)}:"
        )
        lines += [f"  - {_absent_line(s)}" for s in absent]
    if uncounted:
        lines.append(f"Not counted: {'; '.join(uncounted)}.")
    return "\n".join(lines)


def _short_line(s: Shortfall, quota: Quota) -> str:
    name = s.metric if quota.label in ("", s.metric) else f"{s.metric} ({quota.label})"
    return (
        f"{name}: needs {s.amount} ({'; '.join(n.why for n in s.needs)}); limit {figure(quota.limit)}, "
        f"usage {figure(quota.usage)}, free {figure(quota.free)}; a limit of {figure(quota.usage + s.amount)} fits"
    )


def _absent_line(s: Shortfall) -> str:
    asked = {n.metric for n in s.needs if n.metric != s.metric}
    also = f" (nor {', '.join(sorted(asked))})" if asked else ""
    return f"{s.metric}{also}: would need {s.amount} ({'; '.join(n.why for n in s.needs)})"


def figure(value: float) -> str:
    """A quota figure as messages and commands write it: 8, not 8.0."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"
