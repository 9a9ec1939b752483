"""How the serving Deployment scales on requests in flight, simulated offline on one measured replica.

    venv/bin/python bench/scaling.py --points bench/.work/scaling-points.json   # measure once (a minute), reuse
    venv/bin/python bench/scaling.py --points ... --sweep                       # and the choices around the stack's
    venv/bin/python bench/scaling.py --rates 100,400,800 --seconds 4            # a quick measurement
    venv/bin/python bench/scaling.py --model-store build/models --model-name digits --model-version local \
        --request request.json --rates 200,400,800   # your own published model, with a request of yours

It simulates what the stack renders, nothing else: ``mlstack.autoscaling``'s ``BEHAVIOR``, its
``DEFAULT_TARGET_IN_FLIGHT`` and the query's range ``query_window_seconds(SERVER_SCRAPE_SECONDS)``.

1. Measured. One real server on loopback (the benchmark's digits model, bench/serve.py) gets
   open-loop load at several request rates: Poisson arrivals from asyncio clients, each request's
   latency taken from when it was due, not when a free connection sent it. Its
   ``mlapp_requests_in_flight_seconds_total`` is read before and after each rate, so the increase
   over the seconds between is the exact mean in flight: what ``rate()`` hands the HPA. Each rate
   gives the mean in flight one replica holds at that rate and the p99. The knee is the highest
   rate whose p99 is still under ``KNEE`` times the lightest rate's: where p99 starts to climb. The
   machine may be shared: a rate during which other processes took more than ``QUIET_CORES`` is
   measured again, and each row says how much CPU they took.

2. Simulated, one second at a time:

   - The load is spread evenly over the serving pods. Up to the highest rate a replica sustained,
     each holds the measured mean in flight at its rate; past it, the excess queues in the pods
     and is counted in flight, until a pod holds ``Limits().max_connections`` (512, the app's
     MLAPP_MAX_CONNECTIONS): arrivals past that are refused and counted as errors, as a real pod's
     listener refuses them. A queued request waits for the queue ahead of it; that wait is added to
     the measured p99 of its second.
   - A new pod serves ``--pod-ready-seconds`` after the HPA made it (an assumption: scheduling,
     image, model load); a pod removed stops at once, the newest first (the ReplicaSet's order).
   - Prometheus scrapes every pod every ``--scrape-seconds`` at a phase of its own (a real
     Prometheus spreads its targets' phases), from the pod's start; the counter of a pod grows by
     its share of the in flight while it serves. The KEDA query ``sum(rate(...[W]))`` is evaluated
     at each sync on the samples in (now - W, now] that have been ingested (``--ingest-lag-seconds``),
     each series' rate extrapolated as Prometheus does (prometheus/prometheus promql/functions.go,
     ``extrapolatedRate``); a pod removed keeps its samples in the range until they leave it.
   - The HPA, every ``SYNC_SECONDS``, as the controller does it (kubernetes/kubernetes
     pkg/controller/podautoscaler): ``desired = ceil(total / target)`` unless
     ``total / (target * replicas)`` is within ``TOLERANCE`` of 1 (replica_calculator.go,
     ``GetExternalPerPodMetricReplicas``; ``replicas`` are the pods that exist, serving or not);
     then every sync's raw recommendation is kept and the next size is the current one raised to
     the lowest recommendation of the scale-up window and lowered to the highest of the scale-down
     window (horizontal.go, ``stabilizeRecommendationWithBehaviors``), held to what the policies
     allow since each period began (``calculateScaleUpLimitWithScalingRules``,
     ``calculateScaleDownLimitWithBehaviors``; ``selectPolicy`` Max takes the policy allowing the
     most change, Min the least), and to [min, max] replicas.

The loads are in units of the knee's rate (one unit: what a replica serves before its p99 climbs), so
that targets are compared on the same load: a step, a 90 s burst and a slow ramp. Each starts from
the replicas its first load needs at the target, after a warm-up at that load. Each prints its
replica curve, and per phase of the load: the replicas, the p99 of the answered requests (each
second's at its p99) and the share refused; then a summary: the most replicas, how many times they
changed direction against how many times the load did, the seconds a serving replica was past what
it sustains. ``--sweep`` runs the behaviours and targets around the chosen one.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import itertools
import json
import math
import os
import random
import re
import sys
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

REPO = Path(__file__).resolve().parents[1]
# Run as a script, the bench imports the stack's and the app's modules the way the tests do (pyproject's pythonpath).
for _path in (str(REPO / "app"), str(REPO)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from mlapp.settings import Limits  # noqa: E402 - needs the path above
from mlstack.autoscaling import (  # noqa: E402
    BEHAVIOR,
    DEFAULT_TARGET_IN_FLIGHT,
    Behavior,
    Policy,
    Rules,
    query_window_seconds,
)
from mlstack.monitoring import ANNOTATION_SCRAPE_SECONDS, SERVER_SCRAPE_SECONDS  # noqa: E402

# --- the HPA, as the controller does it -----------------------------------------------------------

# --horizontal-pod-autoscaler-tolerance's default; KEDA 2.17's ScaledObject cannot set another.
TOLERANCE: Final = 0.1
# --horizontal-pod-autoscaler-sync-period's default.
SYNC_SECONDS: Final = 15
# What a pod holds at most: past it, its listener refuses connections (app/mlapp/settings.py).
MAX_CONNECTIONS: Final = Limits().max_connections
# p99 "starts to climb" past this many times the p99 of the lightest load measured.
KNEE: Final = 2.0
# A replica whose p99 is this many times the lightest rate's is not keeping up: its queue grows.
OVERLOAD: Final = 10.0

# The HPA's behaviour when none is given (kubernetes.io, "Horizontal Pod Autoscaling", "Default Behavior"):
# what the stack rendered before bench/scaling.py chose one.
KUBERNETES_DEFAULT: Final = Behavior(
    scale_up=Rules(0, (Policy("Percent", 100, 15), Policy("Pods", 4, 15))),
    scale_down=Rules(300, (Policy("Percent", 100, 15),)),
)


@dataclass(frozen=True)
class Bounds:
    """The ScaledObject's minReplicaCount and maxReplicaCount, which KEDA gives the HPA."""

    min_replicas: int = 1
    max_replicas: int = 100


def desired_replicas(current: int, average: float, target: float, tolerance: float = TOLERANCE) -> int:
    """``ceil(current * average / target)``, or ``current`` when the ratio is within ``tolerance`` of 1."""
    ratio = average / target
    if abs(ratio - 1.0) <= tolerance:
        return current
    # The product rounded first: 3 * (0.7 / 0.7) must be 3, not ceil(3.0000000000000004).
    return math.ceil(round(current * ratio, 9))


def stabilized(current: int, now: float, history: Sequence[tuple[float, int]], behavior: Behavior) -> int:
    """``current`` raised to the lowest recommendation of the up window, lowered to the highest of the down
    window (``history``: every sync's raw recommendation, this one's included, by time)."""
    up_since = now - behavior.scale_up.stabilization_window_seconds
    down_since = now - behavior.scale_down.stabilization_window_seconds
    up = [r for t, r in history if t > up_since] or [history[-1][1]]
    down = [r for t, r in history if t > down_since] or [history[-1][1]]
    return min(max(current, min(up)), max(down))


def _proposals(current: int, now: float, events: Sequence[tuple[float, int]], rules: Rules, sign: int) -> list[int]:
    """What each policy allows: from the replicas at the start of its period, ``sign`` 1 up, -1 down."""
    proposed = []
    for p in rules.policies:
        start = current - sum(change for t, change in events if t > now - p.period_seconds)
        if p.kind == "Pods":
            proposed.append(start + sign * p.value)
        elif sign > 0:  # rounded up, so that a small percentage still adds a pod
            proposed.append(math.ceil(start * (1 + p.value / 100)))
        else:
            proposed.append(int(start * (1 - p.value / 100)))
    return proposed


def rate_limited(
    current: int, desired: int, now: float, events: Sequence[tuple[float, int]], behavior: Behavior, *, bounds: Bounds
) -> int:
    """``desired`` held to what the policies allow and to the bounds; ``events``: (time, replicas added,
    negative when removed)."""
    if desired > current:
        up = _proposals(current, now, events, behavior.scale_up, 1)
        limit = max(up) if behavior.scale_up.select_policy == "Max" else min(up)
        return min(desired, max(limit, current), bounds.max_replicas)
    if desired < current:
        down = _proposals(current, now, events, behavior.scale_down, -1)
        limit = min(down) if behavior.scale_down.select_policy == "Max" else max(down)
        return max(desired, min(limit, current), bounds.min_replicas)
    return current


@dataclass
class Hpa:
    """One HorizontalPodAutoscaler on an AverageValue metric: ``sync`` every ``SYNC_SECONDS``."""

    target: float
    replicas: int
    behavior: Behavior = BEHAVIOR
    bounds: Bounds = field(default_factory=Bounds)
    created: float = 0.0
    history: list[tuple[float, int]] = field(default_factory=list)
    events: list[tuple[float, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        # A new HPA's down window starts holding the replicas it found (the controller's
        # ``maybeInitScaleDownStabilizationWindow``), so it scales down no sooner than a window after it is made.
        self.history = self.history or [(self.created, self.replicas)]

    def sync(self, now: float, total: float) -> int:
        """The replicas after this sync, given the metric's total over the fleet."""
        raw = desired_replicas(self.replicas, total / self.replicas, self.target)
        self.history.append((now, raw))
        keep = max(self.behavior.scale_up.stabilization_window_seconds,
                   self.behavior.scale_down.stabilization_window_seconds)  # fmt: skip
        self.history = [(t, r) for t, r in self.history if t > now - keep] or [(now, raw)]
        wanted = stabilized(self.replicas, now, self.history, self.behavior)
        new = rate_limited(self.replicas, wanted, now, self.events, self.behavior, bounds=self.bounds)
        longest = max(p.period_seconds for p in (*self.behavior.scale_up.policies, *self.behavior.scale_down.policies))
        self.events = [(t, c) for t, c in self.events if t > now - longest]
        if new != self.replicas:
            self.events.append((now, new - self.replicas))
            self.replicas = new
        return new


def direction_changes(values: Sequence[float]) -> int:
    """How many times a series turned from rising to falling or back."""
    turns = 0
    last = 0
    for before, after in itertools.pairwise(values):
        step = (after > before) - (after < before)
        if step and last and step != last:
            turns += 1
        last = step or last
    return turns


# --- Prometheus' rate() -----------------------------------------------------------------------------


def extrapolated_rate(samples: Sequence[tuple[float, float]], start: float, end: float) -> float | None:
    """``rate()`` of one counter series over the range (start, end], as Prometheus computes it: the increase
    between the first and last sample, extrapolated to the range's edges when the samples reach within 1.1
    average intervals of them (else by half an interval), never back past the counter's zero, divided by the
    range; None with fewer than two samples (prometheus/prometheus promql/functions.go, ``extrapolatedRate``)."""
    if len(samples) < 2:
        return None
    (first_t, first_v), (last_t, last_v) = samples[0], samples[-1]
    increase = last_v - first_v
    sampled = last_t - first_t
    average_gap = sampled / (len(samples) - 1)
    to_start, to_end = first_t - start, end - last_t
    if to_start >= 1.1 * average_gap:
        to_start = average_gap / 2
    if increase > 0 and first_v >= 0:
        to_start = min(to_start, sampled * first_v / increase)
    if to_end >= 1.1 * average_gap:
        to_end = average_gap / 2
    return increase * (sampled + to_start + to_end) / sampled / (end - start)


# --- the measured curve ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    """One offered rate on one replica: what it answered, its exact mean in flight, its p50 and p99."""

    rate: float
    achieved: float
    in_flight: float
    p50_ms: float
    p99_ms: float
    errors: int
    others_cores: float = 0.0  # CPU other processes on the machine took meanwhile, in cores


@dataclass(frozen=True)
class Curve:
    """Mean in flight and p99 of one replica as functions of its request rate, from measured points."""

    points: tuple[Point, ...]  # by rate, each one the replica sustained

    @property
    def capacity(self) -> float:
        return self.points[-1].rate

    @functools.cached_property
    def _levels(self) -> tuple[float, ...]:
        # Measurement noise can make a point hold less than the one below it; the curve takes the running maximum.
        return tuple(itertools.accumulate((p.in_flight for p in self.points), max))

    def _interpolate(self, rate: float, values: Sequence[float], at_zero: float) -> float:
        rates = [p.rate for p in self.points]
        rate = min(rate, self.capacity)
        i = bisect_left(rates, rate)
        lo = (0.0, at_zero) if i == 0 else (rates[i - 1], values[i - 1])
        hi = (rates[i], values[i])
        if hi[0] == lo[0]:
            return hi[1]
        return lo[1] + (hi[1] - lo[1]) * (rate - lo[0]) / (hi[0] - lo[0])

    def in_flight(self, rate: float) -> float:
        """The mean in flight at ``rate`` (at most ``capacity``), never falling as the rate rises."""
        return self._interpolate(rate, self._levels, 0.0)

    def p99_ms(self, rate: float) -> float:
        return self._interpolate(rate, [p.p99_ms for p in self.points], self.points[0].p99_ms)

    def rate_at(self, in_flight: float) -> float:
        """The rate at which a replica holds ``in_flight`` on average (``capacity`` past the curve's top)."""
        lo = (0.0, 0.0)
        for p, level in zip(self.points, self._levels, strict=True):
            if level >= in_flight:
                return lo[0] + (p.rate - lo[0]) * (in_flight - lo[1]) / ((level - lo[1]) or 1.0)
            lo = (p.rate, level)
        return self.capacity


def knee(points: Sequence[Point]) -> Point:
    """The highest rate whose p99 is under ``KNEE`` times the lightest rate's: where p99 starts to climb."""
    floor = points[0].p99_ms
    under = [p for p in points if p.p99_ms <= KNEE * floor]
    return under[-1]


def elasticity(lower: Point, upper: Point) -> float:
    """d ln(in flight) / d ln(rate) between two points: 1 while latency is flat (Little's law), more as it climbs."""
    if lower.in_flight <= 0 or upper.in_flight <= 0:
        return math.nan
    return math.log(upper.in_flight / lower.in_flight) / math.log(upper.rate / lower.rate)


def sustained(points: Sequence[Point]) -> tuple[Point, ...]:
    """The points one replica kept up with: it answered 97 % of what was offered, without errors, and its p99
    stayed under ``OVERLOAD`` times the lightest rate's (past that its queue was growing)."""
    floor = points[0].p99_ms
    return tuple(p for p in points if p.achieved >= 0.97 * p.rate and not p.errors and p.p99_ms <= OVERLOAD * floor)


# --- the simulation -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Phase:
    name: str
    start: float
    end: float


@dataclass(frozen=True)
class Scenario:
    """A load in units of the knee's rate, over ``seconds``, in phases that each hold one kind of change."""

    name: str
    units: Callable[[float], float]
    seconds: int
    phases: tuple[Phase, ...]


def _ramp(t: float) -> float:
    if t < 1800:
        return 1 + 19 * t / 1800
    if t < 2100:
        return 20.0
    return max(1.0, 20 - 19 * (t - 2100) / 1800)


SCENARIOS: Final = (
    Scenario("step", lambda t: 12.0 if 300 <= t < 900 else 3.0, 1800,
             (Phase("3 units", 0, 300), Phase("12 units", 300, 900), Phase("3 units again", 900, 1800))),
    Scenario("burst", lambda t: 15.0 if 300 <= t < 390 else 3.0, 1500,
             (Phase("3 units", 0, 300), Phase("15 units for 90 s", 300, 390), Phase("3 units again", 390, 1500))),
    Scenario("slow ramp", _ramp, 4200,
             (Phase("1 to 20 units over 30 min", 0, 1800), Phase("20 units", 1800, 2100),
              Phase("20 to 1 unit over 30 min", 2100, 3900), Phase("1 unit", 3900, 4200))),
)  # fmt: skip


@dataclass(frozen=True)
class Cluster:
    """What the simulation assumes around the HPA; the defaults are a cloud target's. The query's range is the
    stack's, ``query_window_seconds(scrape_seconds)``."""

    ready_seconds: int = 20  # from the HPA's scale-up to the pod serving
    scrape_seconds: int = SERVER_SCRAPE_SECONDS
    ingest_lag_seconds: int = 0  # from a scrape until its sample can be queried
    max_connections: int = MAX_CONNECTIONS  # a pod's in flight at most
    bounds: Bounds = field(default_factory=Bounds)
    warmup_seconds: int = 900  # at the first second's load before t = 0, so that a run starts settled

    @property
    def window_seconds(self) -> int:
        return query_window_seconds(self.scrape_seconds)


@dataclass
class _Pod:
    created: int
    ready: int
    phase: int  # its scrapes fall at this second of each interval
    removed: float = math.inf

    def serves(self, t: int) -> bool:
        return self.ready <= t < self.removed


@dataclass(frozen=True)
class Tick:
    t: int
    offered: float  # req/s
    replicas: int  # what the HPA set
    ready: int  # serving
    in_flight: float  # the fleet's mean in flight over this second
    refused: float  # requests refused this second
    p99_ms: float  # of the requests answered this second
    total: float | None  # what the HPA read at its last sync (the fleet's sum), None before one


def simulate(
    curve: Curve,
    target: float,
    load: Callable[[float], float],
    seconds: int,
    *,
    behavior: Behavior = BEHAVIOR,
    cluster: Cluster | None = None,
) -> list[Tick]:
    """Replicas over time, one tick a second, under an HPA on ``target`` in flight per replica that reads
    ``sum(rate(mlapp_requests_in_flight_seconds_total[W]))`` (module docstring)."""
    cluster = cluster or Cluster()
    bounds, window, every = cluster.bounds, cluster.window_seconds, cluster.scrape_seconds
    start = min(bounds.max_replicas, max(bounds.min_replicas, math.ceil(load(0.0) / curve.rate_at(target))))
    first = -cluster.warmup_seconds
    hpa = Hpa(target, start, behavior, bounds, created=first)
    # Scrape phases spread over the interval by the golden ratio, as distinct as hashed ones and reproducible.
    made = itertools.count()
    pods = [_Pod(first, first, int((next(made) * 0.618034) % 1 * every)) for _ in range(start)]
    served = [0.0]  # one serving pod's in flight, integrated from ``first``: served[i] at second first + i

    def counter(pod: _Pod, at: int) -> float:
        since = min(max(pod.ready, first), at)
        return served[at - first] - served[since - first]

    def query(now: int) -> float | None:
        series = []
        for pod in pods:
            since = max(pod.created, now - window + 1)
            scrapes = range(since + (pod.phase - since) % every, now - cluster.ingest_lag_seconds + 1, every)
            samples = [(float(s), counter(pod, s)) for s in scrapes if s <= pod.removed]
            series.append(extrapolated_rate(samples, now - window, now))
        rates = [r for r in series if r is not None]
        return sum(rates) if rates else None

    backlog = 0.0  # requests queued beyond what the serving pods hold at their rate
    total: float | None = None
    ticks: list[Tick] = []
    for t in range(first, seconds):
        offered = load(max(0.0, float(t)))
        ready = max(1, sum(1 for p in pods if p.serves(t)))
        rate = min(offered / ready, curve.capacity)
        steady = ready * curve.in_flight(rate)
        backlog = max(0.0, backlog + offered - ready * curve.capacity)
        refused = max(0.0, backlog - (ready * cluster.max_connections - steady))
        backlog -= refused
        in_flight = steady + backlog
        served.append(served[-1] + in_flight / ready)
        if t % SYNC_SECONDS == 0 and t > first:
            total = query(t)
            before = hpa.replicas
            after = hpa.sync(float(t), total) if total is not None else before
            for _ in range(after - before):
                n = next(made)
                pods.append(_Pod(t, t + cluster.ready_seconds, int((n * 0.618034) % 1 * every)))
            alive = sorted((p for p in pods if p.removed == math.inf), key=lambda p: p.created)
            for pod in alive[after:]:  # the newest go first
                pod.removed = t
            pods = [p for p in pods if p.removed > t - window - every]
        if t >= 0:
            wait_ms = backlog / (ready * curve.capacity) * 1000
            ticks.append(Tick(t, offered, hpa.replicas, ready, in_flight, refused, curve.p99_ms(rate) + wait_ms,
                              total))  # fmt: skip
    return ticks


def weighted_p99(ticks: Iterable[Tick]) -> float:
    """The p99 of the requests answered over ``ticks``, each second's requests taken at that second's p99."""
    answered = sorted(((t.p99_ms, t.offered - t.refused) for t in ticks), key=lambda x: x[0])
    total = sum(n for _, n in answered)
    seen = 0.0
    for p99, n in answered:
        seen += n
        if seen >= 0.99 * total:
            return p99
    return answered[-1][0] if answered else math.nan


@dataclass(frozen=True)
class PhaseSummary:
    phase: Phase
    offered: tuple[float, float]  # req/s, lowest and highest
    replicas: tuple[int, int]
    at_end: int  # replicas at the phase's last second
    needed_at_end: int  # what its last second's load needs (``needed``)
    p99_ms: float
    refused_share: float

    @property
    def seconds(self) -> float:
        return self.phase.end - self.phase.start


@dataclass(frozen=True)
class Summary:
    low: int
    high: int
    max_replicas: int
    needed_peak: int  # replicas the highest load needs
    changes: int
    turns: int  # direction changes of the replicas
    load_turns: int  # direction changes of the load
    over: int  # seconds with a serving replica past capacity
    refused_share: float
    worst_p99_ms: float  # the worst phase's
    phases: tuple[PhaseSummary, ...]

    @property
    def follows(self) -> bool:
        """The replicas turned no more often than the load, stayed under the max, and every phase that holds one
        load for ``SETTLED_PHASE_SECONDS`` or more ended with at least what that load needs."""
        held = [p for p in self.phases if p.offered[0] == p.offered[1] and p.seconds >= SETTLED_PHASE_SECONDS]
        return (
            self.turns <= self.load_turns
            and self.high < self.max_replicas
            and all(p.at_end >= p.needed_at_end for p in held)
        )


# The down window: a load held this long has given the HPA time to act on it both ways.
SETTLED_PHASE_SECONDS: Final = 300


def needed(curve: Curve, target: float, offered: float) -> int:
    """The fewest replicas the HPA accepts for ``offered`` req/s: each holding at most the target plus the
    tolerance."""
    return math.ceil(offered / curve.rate_at(target * (1 + TOLERANCE)))


def summarize(curve: Curve, target: float, scenario: Scenario, ticks: Sequence[Tick], bounds: Bounds) -> Summary:
    replicas = [t.replicas for t in ticks]
    phases = []
    for phase in scenario.phases:
        inside = [t for t in ticks if phase.start <= t.t < phase.end]
        offered = sum(t.offered for t in inside)
        phases.append(PhaseSummary(
            phase,
            (min(t.offered for t in inside), max(t.offered for t in inside)),
            (min(t.replicas for t in inside), max(t.replicas for t in inside)),
            inside[-1].replicas,
            needed(curve, target, inside[-1].offered),
            weighted_p99(inside),
            sum(t.refused for t in inside) / offered,
        ))  # fmt: skip
    return Summary(
        min(replicas),
        max(replicas),
        bounds.max_replicas,
        needed(curve, target, max(t.offered for t in ticks)),
        sum(1 for a, b in itertools.pairwise(replicas) if a != b),
        direction_changes(replicas),
        direction_changes([t.offered for t in ticks]),
        sum(1 for t in ticks if t.offered / t.ready > curve.capacity),
        sum(t.refused for t in ticks) / sum(t.offered for t in ticks),
        max(p.p99_ms for p in phases),
        tuple(phases),
    )


def _scaled(scenario: Scenario, unit: float) -> Callable[[float], float]:
    return lambda t: unit * scenario.units(t)


def run(
    curve: Curve,
    unit: float,
    *,
    target: float = DEFAULT_TARGET_IN_FLIGHT,
    behavior: Behavior = BEHAVIOR,
    cluster: Cluster | None = None,
) -> list[tuple[Scenario, list[Tick], Summary]]:
    """Every scenario at ``unit`` req/s a unit, under the stack's target and behaviour unless told otherwise."""
    out = []
    for scenario in SCENARIOS:
        ticks = simulate(curve, target, _scaled(scenario, unit), scenario.seconds, behavior=behavior, cluster=cluster)
        out.append((scenario, ticks, summarize(curve, target, scenario, ticks, (cluster or Cluster()).bounds)))
    return out


# --- measuring one replica ------------------------------------------------------------------------

IN_FLIGHT_SECONDS = re.compile(rb"^mlapp_requests_in_flight_seconds_total (\S+)$", re.M)
# Connections the load generator opens at most, under the server's MAX_CONNECTIONS: it measures the
# server's latency, not its refusals.
CLIENT_CONNECTIONS: Final = 400
# The machine is shared: a rate during which other processes took more than this is measured again.
QUIET_CORES: Final = 0.1


async def _answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
    return int(head.split(b" ", 2)[1]), await reader.readexactly(length)


async def _in_flight_seconds(metrics_port: int) -> float:
    reader, writer = await asyncio.open_connection("127.0.0.1", metrics_port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    _, body = await _answer(reader)
    writer.close()
    found = IN_FLIGHT_SECONDS.search(body)
    if not found:
        raise RuntimeError(f"no mlapp_requests_in_flight_seconds_total on port {metrics_port}")
    return float(found[1])


async def _offer(ports: tuple[int, int], request: bytes, rate: float, seconds: float, seed: int) -> Point:
    """``rate`` requests a second for ``seconds``, Poisson, each on a free kept-alive connection; ``ports``:
    the server's public and metrics ports."""
    port, metrics_port = ports
    loop = asyncio.get_running_loop()
    rng = random.Random(seed)
    idle: deque[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = deque()
    opened = 0
    freed = asyncio.Event()
    latencies: list[float] = []
    errors = 0

    async def one(due: float) -> None:
        nonlocal opened, errors
        while not idle and opened >= CLIENT_CONNECTIONS:
            freed.clear()
            await freed.wait()
        if idle:
            reader, writer = idle.popleft()
        else:
            opened += 1
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        status, _ = await _answer(reader)
        latencies.append(loop.time() - due)
        errors += status != 200
        idle.append((reader, writer))
        freed.set()

    tasks: set[asyncio.Task[None]] = set()
    counted = await _in_flight_seconds(metrics_port)
    begin = loop.time()
    due = begin
    while due < begin + seconds:
        now = loop.time()
        while due <= now:
            task = loop.create_task(one(due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            due += rng.expovariate(rate)
        await asyncio.sleep(min(0.001, max(0.0, due - loop.time())))
    await asyncio.gather(*tasks)
    elapsed = loop.time() - begin
    in_flight = (await _in_flight_seconds(metrics_port) - counted) / (loop.time() - begin)
    for _, writer in idle:
        writer.close()
    latencies.sort()
    return Point(
        rate,
        len(latencies) / elapsed,
        in_flight,
        latencies[len(latencies) // 2] * 1000,
        latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
        errors,
    )


@dataclasses.dataclass(frozen=True)
class YourModel:
    """A model of the user's own, published as the stack publishes it (``make train`` writes one into
    build/models), and one inference request for it, an Open Inference Protocol JSON body."""

    store: Path  # the model store: <store>/<name>/<version>/
    name: str
    version: str
    request: Path


def measure(
    rates: Sequence[float], seconds: float, rows: int, tries: int, model: YourModel | None = None
) -> list[Point]:
    """One server on loopback, on its own core; each rate offered for ``seconds`` from this process, on another.
    A rate measured while other processes on the machine took more than ``QUIET_CORES`` is measured again, up
    to ``tries`` times; the quietest try is kept. ``model``: the user's own model and request, instead of the
    benchmark's digits model with ``rows`` rows of binary data."""
    import uvloop  # noqa: PLC0415 - the server's own dependency; the simulation needs none of this

    from bench import serve  # noqa: PLC0415

    if model is None:
        store, name, version = serve.ensure_model(), serve.MODEL, serve.VERSION
        body = serve.binary_body(rows)
        data, headers = body.data, body.headers
    else:
        store, name, version = model.store, model.name, model.version
        data, headers = model.request.read_bytes(), {"Content-Type": "application/json"}
    plain = {"MLAPP_PLAIN_HTTP": "1"}
    server = serve.start_ours(store, "scaling", extra_env=plain, model=name, version=version)
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) > 1:  # the server and its load on separate cores, as a pod's CPU is its own
        os.sched_setaffinity(server.proc.pid, {cores[0]})
        os.sched_setaffinity(0, set(cores[1:]))
    metrics_port = int(server.metrics_url.rsplit(":", 1)[1].split("/", 1)[0])
    head = [f"POST /v2/models/{name}/infer HTTP/1.1", "Host: 127.0.0.1", f"Authorization: {serve.BASIC_AUTH}",
            f"Content-Length: {len(data)}", *(f"{k}: {v}" for k, v in headers.items())]  # fmt: skip
    request = ("\r\n".join(head) + "\r\n\r\n").encode() + data

    def offer(rate: float, seed: int) -> Point:
        busy, ours, begin = serve.machine_cpu()[0], serve.tree_cpu_seconds(os.getpid()), time.perf_counter()
        point = uvloop.run(_offer((server.port, metrics_port), request, rate, seconds, seed))
        others = serve.machine_cpu()[0] - busy - (serve.tree_cpu_seconds(os.getpid()) - ours)
        return dataclasses.replace(point, others_cores=max(0.0, others) / (time.perf_counter() - begin))

    points: list[Point] = []
    try:
        server.wait_ready()
        uvloop.run(_offer((server.port, metrics_port), request, 50, 1.0, 0))  # warm up
        for i, rate in enumerate(rates):
            attempts = [offer(rate, i + 1)]
            while attempts[-1].others_cores > QUIET_CORES and len(attempts) < tries:
                time.sleep(5)
                attempts.append(offer(rate, i + 1))
            point = min(attempts, key=lambda p: p.others_cores)
            points.append(point)
            print(
                f"[scaling] {rate:7.0f} req/s offered: {point.achieved:7.0f} answered, in flight "
                f"{point.in_flight:7.2f}, p50 {point.p50_ms:7.2f} ms, p99 {point.p99_ms:8.2f} ms, "
                f"{point.errors} errors; other processes {point.others_cores:.2f} cores ({len(attempts)} tries)",
                file=sys.stderr,
                flush=True,
            )
            if point.achieved < 0.95 * rate:
                break  # past what one replica sustains
    finally:
        server.stop()
    return points


def load_points(path: Path) -> list[Point]:
    return [Point(**p) for p in json.loads(path.read_text())]


# --- the report -----------------------------------------------------------------------------------


def describe(behavior: Behavior) -> str:
    def rules(r: Rules) -> str:
        def policy(p: Policy) -> str:
            unit = " %" if p.kind == "Percent" else " pods" if p.value > 1 else " pod"
            return f"{p.value}{unit} per {p.period_seconds} s"

        each = [policy(p) for p in r.policies]
        policies = each[0] if len(each) == 1 else f"{r.select_policy.lower()}({', '.join(each)})"
        return f"window {r.stabilization_window_seconds} s, {policies}"

    return f"up: {rules(behavior.scale_up)}; down: {rules(behavior.scale_down)}"


def print_measured(points: Sequence[Point], kept: Sequence[Point]) -> None:
    print("\n## One replica, measured\n")
    print("| offered (req/s) | answered (req/s) | in flight (mean) | elasticity | p50 (ms) | p99 (ms) | errors "
          "| other processes (cores) |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for before, p in zip([None, *points], points, strict=False):
        slope = f"{elasticity(before, p):.1f}" if before and p in kept else ""
        print(f"| {p.rate:.0f} | {p.achieved:.0f} | {p.in_flight:.3f} | {slope} | {p.p50_ms:.2f} | {p.p99_ms:.2f} "
              f"| {p.errors} | {p.others_cores:.2f} |")  # fmt: skip


def _units(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")


def print_curve(scenario: Scenario, ticks: Sequence[Tick], unit: float) -> None:
    """Replicas and offered load every 60 s, ten minutes a row."""
    print(f"\n### {scenario.name}: replicas every 60 s (offered load in units of {unit:.0f} req/s)\n")
    print("| minutes | replicas | offered (units) |")
    print("|---|---|---|")
    minutes = ticks[::60]
    for row in range(0, len(minutes), 10):
        chunk = minutes[row : row + 10]
        replicas = " ".join(str(t.replicas) for t in chunk)
        print(f"| {row}-{row + len(chunk) - 1} | {replicas} | {' '.join(_units(t.offered / unit) for t in chunk)} |")


def print_phases(name: str, s: Summary) -> None:
    print(f"\n| {name}: phase | offered (req/s) | replicas | at its end (needed) | p99 (ms) | refused |")
    print("|---|---:|---:|---:|---:|---:|")
    for p in s.phases:
        low, high = p.offered
        offered = f"{low:,.0f}" if round(low) == round(high) else f"{low:,.0f}-{high:,.0f}"
        replicas = f"{p.replicas[0]}" if p.replicas[0] == p.replicas[1] else f"{p.replicas[0]}-{p.replicas[1]}"
        print(f"| {p.phase.name} | {offered} | {replicas} | {p.at_end} ({p.needed_at_end}) | {p.p99_ms:,.1f} "
              f"| {p.refused_share:.2%} |")  # fmt: skip


SUMMARY_COLUMNS: Final = (
    "| load | replicas (needed at peak) | changes | direction changes (load's) | s past capacity | refused "
    "| worst phase p99 (ms) | follows |"
)


def summary_row(name: str, s: Summary) -> str:
    return (f"| {name} | {s.low}-{s.high} ({s.needed_peak}) | {s.changes} | {s.turns} ({s.load_turns}) | {s.over} "
            f"| {s.refused_share:.2%} | {s.worst_p99_ms:,.1f} | {'yes' if s.follows else 'no'} |")  # fmt: skip


def conditions(cluster: Cluster) -> dict[str, tuple[Cluster, float]]:
    """Where the assumptions differ from ``cluster``: the name, the cluster, and a factor on the loads."""
    return {
        "as above": (cluster, 1.0),
        f"scrapes every {ANNOTATION_SCRAPE_SECONDS} s (a local Prometheus)":
            (dataclasses.replace(cluster, scrape_seconds=ANNOTATION_SCRAPE_SECONDS), 1.0),
        "pods serve after 60 s": (dataclasses.replace(cluster, ready_seconds=60), 1.0),
        "pods serve after 120 s": (dataclasses.replace(cluster, ready_seconds=120), 1.0),
        "samples queryable 30 s after the scrape": (dataclasses.replace(cluster, ingest_lag_seconds=30), 1.0),
        "loads x10, up to 1,000 replicas": (dataclasses.replace(cluster, bounds=Bounds(1, 1000)), 10.0),
    }  # fmt: skip


def cases(target: float, knee_in_flight: float, *, sweep: bool) -> list[tuple[str, float, Behavior]]:
    """The stack's behaviour and target against Kubernetes' default behaviour; with ``sweep``, also each of the
    stack's choices changed one way at a time."""
    up, down = BEHAVIOR.scale_up, BEHAVIOR.scale_down
    compared = [
        ("the stack's", target, BEHAVIOR),
        (f"Kubernetes' default, target {target:g}", target, KUBERNETES_DEFAULT),
        (f"Kubernetes' default, target {knee_in_flight:.2f} (the knee)", knee_in_flight, KUBERNETES_DEFAULT),
    ]
    if not sweep:
        return compared
    return [
        *compared,
        (f"the stack's, target {knee_in_flight:.2f} (the knee)", knee_in_flight, BEHAVIOR),
        ("the stack's, target 1", 1.0, BEHAVIOR),
        ("the stack's, target 0.25", 0.25, BEHAVIOR),
        ("up as Kubernetes' default", target, Behavior(KUBERNETES_DEFAULT.scale_up, down)),
        ("up 100 % a minute", target, Behavior(Rules(0, (Policy("Percent", 100, 60),)), down)),
        ("up 4 pods a minute, no percentage", target, Behavior(Rules(0, up.policies[:1]), down)),
        ("up window 60 s", target, Behavior(dataclasses.replace(up, stabilization_window_seconds=60), down)),
        ("down as Kubernetes' default", target, Behavior(up, KUBERNETES_DEFAULT.scale_down)),
        ("down 1 pod a minute", target, Behavior(up, Rules(300, (Policy("Pods", 1, 60),)))),
        ("down window 60 s", target, Behavior(up, dataclasses.replace(down, stabilization_window_seconds=60))),
    ]


def print_sweep(
    title: str, curve: Curve, unit: float, cluster: Cluster, rows: Sequence[tuple[str, float, Behavior]]
) -> None:
    """Each case under each condition, one row each (a cell holds the step's, the burst's and the ramp's), then one
    row a case over every condition."""
    print(f"\n## {title}\n")
    print("| case | condition | direction changes past the load's | most replicas / needed at peak | s past capacity "
          "| refused | follows |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    totals = []
    for case, target, behavior in rows:
        everywhere: list[Summary] = []
        for condition, (where, factor) in conditions(cluster).items():
            summaries = [s for _, _, s in run(curve, unit * factor, target=target, behavior=behavior, cluster=where)]
            everywhere += summaries

            def cell(value: Callable[[Summary], str]) -> str:
                return " / ".join(value(s) for s in summaries)  # noqa: B023 - used at once

            follows = sum(s.follows for s in summaries)
            print(f"| {case} | {condition} | {cell(lambda s: str(s.turns - s.load_turns))} "
                  f"| {cell(lambda s: f'{s.high}/{s.needed_peak}')} | {cell(lambda s: str(s.over))} "
                  f"| {cell(lambda s: f'{s.refused_share:.1%}')} | {follows}/{len(summaries)} |")  # fmt: skip
        totals.append((case, everywhere))
    print("\n| case | runs that turned more than the load | direction changes past the load's | follows "
          "| most replicas / needed at peak, worst | s past capacity, worst step |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|")
    for case, everywhere in totals:
        extra = [s.turns - s.load_turns for s in everywhere]
        worst = max(everywhere, key=lambda s: s.high / s.needed_peak)
        steps = everywhere[:: len(SCENARIOS)]
        print(f"| {case} | {sum(1 for x in extra if x > 0)}/{len(extra)} | {sum(max(0, x) for x in extra)} "
              f"| {sum(s.follows for s in everywhere)}/{len(everywhere)} | {worst.high}/{worst.needed_peak} "
              f"| {max(s.over for s in steps)} |")  # fmt: skip


def report(curve: Curve, unit: float, args: argparse.Namespace) -> None:
    target = args.target or DEFAULT_TARGET_IN_FLIGHT
    cluster = Cluster(args.pod_ready_seconds, args.scrape_seconds, args.ingest_lag_seconds)
    knee_in_flight = curve.in_flight(unit)
    bounds = cluster.bounds
    print(
        f"\nKnee: p99 starts to climb past {unit:,.0f} req/s a replica, {knee_in_flight:.2f} in flight (two thirds "
        f"of it: {knee_in_flight * 2 / 3:.2f}); a replica sustains {curve.capacity:,.0f} req/s. Target: {target:g} "
        f"in flight a replica (mlstack.autoscaling.DEFAULT_TARGET_IN_FLIGHT: {DEFAULT_TARGET_IN_FLIGHT:g}), at "
        f"{curve.rate_at(target):,.0f} req/s a replica."
    )
    print(
        f"HPA: sync {SYNC_SECONDS} s, tolerance {TOLERANCE}, mlstack.autoscaling.BEHAVIOR ({describe(BEHAVIOR)}); "
        f"replicas {bounds.min_replicas}-{bounds.max_replicas}. It reads sum(rate(...[{cluster.window_seconds}s])) "
        f"of scrapes every {cluster.scrape_seconds} s, queryable {cluster.ingest_lag_seconds} s after; pods serve "
        f"{cluster.ready_seconds} s after they are made and hold at most {cluster.max_connections} in flight."
    )
    results = run(curve, unit, target=target, cluster=cluster)
    for scenario, ticks, s in results:
        print_curve(scenario, ticks, unit)
        print_phases(scenario.name, s)
    print("\n## Summary\n")
    print(SUMMARY_COLUMNS)
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for scenario, _, s in results:
        print(summary_row(scenario.name, s))
    title = "Sweep: the stack's choices changed one way at a time" if args.sweep else "Against Kubernetes' default"
    print_sweep(f"{title}, and where the assumptions differ", curve, unit, cluster,
                cases(target, knee_in_flight, sweep=args.sweep))  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rates", default="250,500,1000,1500,2000,2200,2400,2600,2800,3000,3200,3600,4000",
                        help="offered request rates to measure, req/s, comma-separated")  # fmt: skip
    parser.add_argument("--seconds", type=float, default=5.0, help="each rate's measurement")
    parser.add_argument("--rows", type=int, default=64, help="rows per request (64: one full run each)")
    parser.add_argument(
        "--tries", type=int, default=5, help="measurements of a rate at most, while others load the machine"
    )
    parser.add_argument("--target", type=float, help="in flight per replica (default: the stack's default)")
    parser.add_argument("--pod-ready-seconds", type=int, default=20, help="from the HPA's scale-up to serving")
    parser.add_argument(
        "--scrape-seconds", type=int, default=SERVER_SCRAPE_SECONDS, help="the servers' scrape interval"
    )
    lag = "from a scrape until its sample can be queried (0: a Prometheus in the cluster)"
    parser.add_argument("--ingest-lag-seconds", type=int, default=0, help=lag)
    parser.add_argument("--sweep", action="store_true", help="also the behaviours and targets around the stack's")
    parser.add_argument("--points", type=Path, help="measured points: read from this JSON file if it exists, else "
                        "measured and written there, so the simulation can be rerun on one measurement")  # fmt: skip
    yours = parser.add_argument_group(
        "your own model", "measure a model you published (make train writes one into build/models) instead"
    )
    yours.add_argument("--model-store", type=Path, help="the model store, <store>/<name>/<version>/")
    yours.add_argument("--model-name", help="the model's name")
    yours.add_argument("--model-version", help="the published version to serve")
    yours.add_argument(
        "--request", type=Path, help="one inference request for it: an Open Inference Protocol JSON body"
    )
    args = parser.parse_args()
    own = (args.model_store, args.model_name, args.model_version, args.request)
    if any(own) and not all(own):
        parser.error("--model-store, --model-name, --model-version and --request go together")
    model = YourModel(*own) if all(own) else None
    if args.points and args.points.exists():
        points = load_points(args.points)
    else:
        rates = [float(r) for r in args.rates.split(",")]
        points = measure(rates, args.seconds, args.rows, args.tries, model)
        if args.points:
            args.points.parent.mkdir(parents=True, exist_ok=True)
            args.points.write_text(json.dumps([dataclasses.asdict(p) for p in points], indent=1))
    kept = sustained(points)
    if len(kept) < 2:
        print("fewer than two rates sustained: nothing to build the curve from", file=sys.stderr)
        return 1
    print_measured(points, kept)
    report(Curve(kept), knee(kept).rate, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
