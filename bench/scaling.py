"""How an HPA driven by KEDA would scale mlapp.serve on ``mlapp_requests_in_flight``, without a cluster.

    venv/bin/python bench/scaling.py                    # measure (about 1 minute), then simulate
    venv/bin/python bench/scaling.py --rates 100,400,800 --seconds 4
    venv/bin/python bench/scaling.py --points p.json    # measure once into p.json; later runs reuse it

Two parts:

1. Measured. One real server on loopback (the benchmark's digits model, bench/serve.py) gets
   open-loop load at several request rates: Poisson arrivals from asyncio clients, each request's
   latency taken from when it was due, not when a free connection sent it. Meanwhile its metrics
   port is scraped every 50 ms for ``mlapp_requests_in_flight``. Each rate gives the in-flight a
   replica holds at that rate (mean of the samples, and the samples themselves) and the p99. The
   target N is the in-flight at the highest rate whose p99 is still under ``KNEE`` times the p99 of
   the lowest rate: where p99 starts to climb.

2. Simulated. The HPA's algorithm, as Kubernetes documents it
   (https://kubernetes.io/docs/tasks/run-application/horizontal-pod-autoscale/):

   "desiredReplicas = ceil[currentReplicas * ( currentMetricValue / desiredMetricValue )]"

   "the control plane skips any scaling action if the ratio is sufficiently close to 1.0 (within a
   globally-configurable tolerance, 0.1 by default)"

   and its default behavior ("Default Behavior" on the same page)::

       scaleDown:
         stabilizationWindowSeconds: 300
         policies:
         - type: Percent
           value: 100
           periodSeconds: 15
       scaleUp:
         stabilizationWindowSeconds: 0
         policies:
         - type: Percent
           value: 100
           periodSeconds: 15
         - type: Pods
           value: 4
           periodSeconds: 15
         selectPolicy: Max

   "When the metrics indicate that the target should be scaled down the algorithm looks into
   previously computed desired states, and uses the highest value from the specified interval."
   How the window and the policies combine follows the controller's source
   (kubernetes/kubernetes pkg/controller/podautoscaler/horizontal.go,
   ``stabilizeRecommendationWithBehaviors``, ``calculateScaleUpLimitWithScalingRules``): every
   sync's raw recommendation is kept; the next size is the current one raised to the lowest
   recommendation of the up window and lowered to the highest of the down window, then held to
   what the policies allow since each period began. The HPA syncs every 15 s
   (``--horizontal-pod-autoscaler-sync-period``).

   KEDA's Prometheus scaler hands the HPA ``sum(mlapp_requests_in_flight)`` as an external metric
   of type AverageValue, so the value compared with the target is the sum divided by the replicas.
   A replica's in-flight at per-replica rate r comes from the measured curve (interpolated; each
   sync draws it from the samples measured nearest r, so the HPA sees the gauge's real noise). Or,
   with ``--window`` W, the HPA reads ``sum(rate(mlapp_requests_in_flight_seconds_total[W]))``: the
   mean in flight over the W seconds before the scrape it reads, which the simulation takes as the
   measured curve's mean at each second's rate (a second holds thousands of requests, so its mean
   is the curve's, not one sample of it), averaged over the window; past
   the highest rate the replica sustained, the excess queues and is counted in flight until the
   replicas drain it. A new pod serves after ``--pod-ready-seconds`` (an assumption: scheduling,
   image and model load), and the metric the HPA reads is ``--metric-lag-seconds`` old (the
   scrape interval).

The three loads (step, burst, slow ramp) are in units of the per-replica rate at the target. Each
prints its replica curve and a summary: the most replicas, how many times the replicas changed
direction (up then down is one; a load that goes up and down once needs one), the seconds a serving
replica was past what it sustains, and the worst p99 on the measured curve. A last table compares
the raw gauge with its rate over ``--window`` seconds, each with no scale-up window and with one of
``--compare-up-window`` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import itertools
import json
import math
import os
import random
import re
import statistics
import sys
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

REPO = Path(__file__).resolve().parents[1]

# --- the HPA, as documented -----------------------------------------------------------------------

TOLERANCE: Final = 0.1
SYNC_SECONDS: Final = 15.0
# p99 "starts to climb" past this many times the p99 of the lightest load measured.
KNEE: Final = 2.0
# A replica whose p99 is this many times the lightest rate's is not keeping up: its queue grows.
OVERLOAD: Final = 10.0


@dataclass(frozen=True)
class Policy:
    kind: Literal["Pods", "Percent"]
    value: int
    period: float


@dataclass(frozen=True)
class Behavior:
    """An HPA's ``behavior`` and replica bounds; the defaults are Kubernetes' own (module docstring)."""

    up_window: float = 0.0
    down_window: float = 300.0
    up: tuple[Policy, ...] = (Policy("Percent", 100, 15), Policy("Pods", 4, 15))
    down: tuple[Policy, ...] = (Policy("Percent", 100, 15),)
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
    up = [r for t, r in history if t > now - behavior.up_window] or [history[-1][1]]
    down = [r for t, r in history if t > now - behavior.down_window] or [history[-1][1]]
    return min(max(current, min(up)), max(down))


def rate_limited(
    current: int, desired: int, now: float, events: Sequence[tuple[float, int]], behavior: Behavior
) -> int:
    """``desired`` held to what the policies allow (``selectPolicy: Max``: the policy allowing the most
    change) and to the replica bounds; ``events``: (time, replicas added, negative when removed)."""

    def start_of(period: float) -> int:
        return current - sum(change for t, change in events if t > now - period)

    if desired > current:
        limits = [
            start_of(p.period) + p.value if p.kind == "Pods" else math.ceil(start_of(p.period) * (1 + p.value / 100))
            for p in behavior.up
        ]
        return min(desired, max(*limits, current), behavior.max_replicas)
    if desired < current:
        limits = [
            start_of(p.period) - p.value if p.kind == "Pods" else int(start_of(p.period) * (1 - p.value / 100))
            for p in behavior.down
        ]
        return max(desired, min(*limits, current), behavior.min_replicas)
    return current


@dataclass
class Hpa:
    """One HorizontalPodAutoscaler on an AverageValue metric: ``sync`` every ``SYNC_SECONDS``."""

    target: float
    replicas: int
    behavior: Behavior = field(default_factory=Behavior)
    history: list[tuple[float, int]] = field(default_factory=list)
    events: list[tuple[float, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        # A new HPA's down window starts holding the replicas it found (the controller's
        # ``maybeInitScaleDownStabilizationWindow``), so it never scales down on its first sync.
        self.history = self.history or [(0.0, self.replicas)]

    def sync(self, now: float, average: float) -> int:
        """The replicas after this sync, given the metric's value per replica."""
        raw = desired_replicas(self.replicas, average, self.target)
        self.history.append((now, raw))
        keep = max(self.behavior.up_window, self.behavior.down_window)
        self.history = [(t, r) for t, r in self.history if t > now - keep] or [(now, raw)]
        wanted = stabilized(self.replicas, now, self.history, self.behavior)
        new = rate_limited(self.replicas, wanted, now, self.events, self.behavior)
        longest = max(p.period for p in (*self.behavior.up, *self.behavior.down))
        self.events = [(t, c) for t, c in self.events if t > now - longest]
        if new != self.replicas:
            self.events.append((now, new - self.replicas))
            self.replicas = new
        return new


def direction_changes(replicas: Sequence[int]) -> int:
    """How many times a series of replica counts turned from rising to falling or back."""
    turns = 0
    last = 0
    for before, after in itertools.pairwise(replicas):
        step = (after > before) - (after < before)
        if step and last and step != last:
            turns += 1
        last = step or last
    return turns


# --- the measured curve ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    """One offered rate on one replica: what it answered, the in-flight samples, the p99."""

    rate: float
    achieved: float
    in_flight: tuple[float, ...]
    p50_ms: float
    p99_ms: float
    errors: int

    @property
    def mean_in_flight(self) -> float:
        return statistics.fmean(self.in_flight) if self.in_flight else 0.0


@dataclass(frozen=True)
class Curve:
    """In-flight and p99 of one replica as functions of its request rate, from measured points."""

    points: tuple[Point, ...]  # by rate, each one the replica sustained

    @property
    def capacity(self) -> float:
        return self.points[-1].rate

    def _interpolate(self, rate: float, value: Callable[[Point], float], at_zero: float) -> float:
        rates = [p.rate for p in self.points]
        rate = min(rate, self.capacity)
        i = bisect_left(rates, rate)
        lo = (0.0, at_zero) if i == 0 else (rates[i - 1], value(self.points[i - 1]))
        hi = (rates[i], value(self.points[i]))
        if hi[0] == lo[0]:
            return hi[1]
        return lo[1] + (hi[1] - lo[1]) * (rate - lo[0]) / (hi[0] - lo[0])

    def in_flight(self, rate: float) -> float:
        return self._interpolate(rate, lambda p: p.mean_in_flight, 0.0)

    def p99_ms(self, rate: float) -> float:
        return self._interpolate(rate, lambda p: p.p99_ms, self.points[0].p99_ms)

    def sample(self, rate: float, rng: random.Random) -> float:
        """One scrape's in-flight at ``rate``: a sample measured at the nearest rate, scaled to the curve."""
        nearest = min(self.points, key=lambda p: abs(p.rate - min(rate, self.capacity)))
        mean = nearest.mean_in_flight
        if not nearest.in_flight or mean == 0:
            return self.in_flight(rate)
        return rng.choice(nearest.in_flight) * self.in_flight(rate) / mean


def knee(points: Sequence[Point]) -> Point:
    """The highest rate whose p99 is under ``KNEE`` times the lightest rate's: where the target sits."""
    floor = points[0].p99_ms
    under = [p for p in points if p.p99_ms <= KNEE * floor]
    return under[-1]


# --- the simulation -------------------------------------------------------------------------------

Load = Callable[[float], float]


def step_load(unit: float) -> tuple[Load, float]:
    return (lambda t: unit * (3 if t < 300 or t >= 900 else 12)), 1800.0


def burst_load(unit: float) -> tuple[Load, float]:
    return (lambda t: unit * (15 if 300 <= t < 390 else 3)), 1500.0


def ramp_load(unit: float) -> tuple[Load, float]:
    def rate(t: float) -> float:
        if t < 1800:
            return unit * (1 + 19 * t / 1800)
        if t < 2100:
            return unit * 20
        return unit * max(1.0, 20 - 19 * (t - 2100) / 1800)

    return rate, 4200.0


SCENARIOS: Final = {"step": step_load, "burst": burst_load, "slow ramp": ramp_load}


@dataclass(frozen=True)
class Tick:
    t: float
    offered: float
    replicas: int  # what the HPA set
    ready: int  # serving
    per_replica: float  # in flight per replica, as the HPA divides it
    p99_ms: float


def simulate(
    curve: Curve,
    target: float,
    load: Load,
    seconds: float,
    *,
    ready_seconds: float,
    lag_seconds: float,
    behavior: Behavior | None = None,
    window: float = 0.0,
    seed: int = 0,
) -> list[Tick]:
    """Replicas over time, one tick a second, as an HPA on ``target`` in-flight per replica would set them:
    in flight as one scrape of the gauge reads it, or with ``window`` its mean over that many seconds."""
    rng = random.Random(seed)
    behavior = behavior or Behavior()
    start = max(behavior.min_replicas, math.ceil(load(0.0) / curve.capacity))
    hpa = Hpa(target, start, behavior)
    ready_at = [0.0] * start  # when each pod serves
    backlog = 0.0  # requests beyond what the serving pods hold at their rate
    seen: deque[float] = deque()  # the metric's totals, for the lag
    means: deque[float] = deque()  # each second's mean in flight, summed over the serving pods
    ticks: list[Tick] = []
    for second in range(int(seconds)):
        t = float(second)
        offered = load(t)
        ready = max(1, sum(1 for r in ready_at if r <= t))
        rate = offered / ready
        backlog = max(0.0, backlog + (offered - ready * curve.capacity))
        steady = sum(curve.sample(rate, rng) for _ in range(ready))
        seen.append(steady + backlog)
        while len(seen) > lag_seconds + 1:
            seen.popleft()
        means.append(ready * curve.in_flight(rate) + backlog)
        while len(means) > lag_seconds + window:
            means.popleft()
        if second % SYNC_SECONDS == 0 and second:
            before = hpa.replicas
            # rate() over the window, read at a scrape ``lag_seconds`` old: the seconds before that scrape.
            averaged = list(means)[: max(1, len(means) - int(lag_seconds))]
            total = statistics.fmean(averaged) if window else seen[0]
            after = hpa.sync(t, total / before)
            if after > before:
                ready_at += [t + ready_seconds] * (after - before)
            elif after < before:
                ready_at = sorted(ready_at)[:after]  # the newest go first
        wait_ms = backlog / (ready * curve.capacity) * 1000
        ticks.append(
            Tick(t, offered, hpa.replicas, ready, (steady + backlog) / hpa.replicas, curve.p99_ms(rate) + wait_ms)
        )
    return ticks


# --- measuring one replica ------------------------------------------------------------------------

GAUGE = re.compile(rb"^mlapp_requests_in_flight (\S+)$", re.M)
MAX_CONNECTIONS: Final = 400


async def _answer(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
    await reader.readexactly(length)
    return int(head.split(b" ", 2)[1])


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
        while not idle and opened >= MAX_CONNECTIONS:
            freed.clear()
            await freed.wait()
        if idle:
            reader, writer = idle.popleft()
        else:
            opened += 1
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        status = await _answer(reader)
        latencies.append(loop.time() - due)
        errors += status != 200
        idle.append((reader, writer))
        freed.set()

    samples: list[float] = []
    done = False

    async def scrape() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", metrics_port)
        while not done:
            writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
            found = GAUGE.search(await reader.readexactly(length))
            if found:
                samples.append(float(found[1]))
            await asyncio.sleep(0.05)
        writer.close()

    tasks: set[asyncio.Task[None]] = set()
    scraper = loop.create_task(scrape())
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
    done = True
    await scraper
    for _, writer in idle:
        writer.close()
    latencies.sort()
    return Point(
        rate,
        len(latencies) / elapsed,
        tuple(samples),
        latencies[len(latencies) // 2] * 1000,
        latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
        errors,
    )


def measure(rates: Sequence[float], seconds: float, rows: int) -> list[Point]:
    """One server on loopback, on its own core; each rate offered for ``seconds`` from this process, on another."""
    sys.path.insert(0, str(REPO))
    import uvloop  # noqa: PLC0415 - the server's own dependency; the simulation needs none of this

    from bench import serve  # noqa: PLC0415

    store = serve.ensure_model()
    server = serve.start_ours(store, "scaling", extra_env={"MLAPP_PLAIN_HTTP": "1"})
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) > 1:  # the server and its load on separate cores, as a pod's CPU is its own
        os.sched_setaffinity(server.proc.pid, {cores[0]})
        os.sched_setaffinity(0, set(cores[1:]))
    metrics_port = int(server.metrics_url.rsplit(":", 1)[1].split("/", 1)[0])
    body = serve.binary_body(rows)
    head = [f"POST /v2/models/{serve.MODEL}/infer HTTP/1.1", "Host: 127.0.0.1", f"Authorization: {serve.BASIC_AUTH}",
            f"Content-Length: {len(body.data)}", *(f"{k}: {v}" for k, v in body.headers.items())]  # fmt: skip
    request = ("\r\n".join(head) + "\r\n\r\n").encode() + body.data
    points: list[Point] = []
    try:
        server.wait_ready()
        uvloop.run(_offer((server.port, metrics_port), request, 50, 1.0, 0))  # warm up
        for i, rate in enumerate(rates):
            point = uvloop.run(_offer((server.port, metrics_port), request, rate, seconds, i + 1))
            points.append(point)
            print(
                f"[scaling] {rate:7.0f} req/s offered: {point.achieved:7.0f} answered, in flight "
                f"{point.mean_in_flight:6.2f} (max {max(point.in_flight, default=0):.0f}), p50 {point.p50_ms:7.2f} ms, "
                f"p99 {point.p99_ms:8.2f} ms, {point.errors} errors",
                file=sys.stderr,
                flush=True,
            )
            if point.achieved < 0.95 * rate:
                break  # past what one replica sustains
    finally:
        server.stop()
    return points


def sustained(points: Sequence[Point]) -> tuple[Point, ...]:
    """The points one replica kept up with: it answered 97 % of what was offered, without errors, and its p99
    stayed under ``OVERLOAD`` times the lightest rate's (past that its queue was growing)."""
    floor = points[0].p99_ms
    return tuple(p for p in points if p.achieved >= 0.97 * p.rate and not p.errors and p.p99_ms <= OVERLOAD * floor)


@dataclass(frozen=True)
class Summary:
    low: int
    high: int
    changes: int
    turns: int  # direction changes
    over: int  # seconds with a serving replica past capacity
    worst_p99_ms: float
    median_per_replica: float


def summarize(curve: Curve, ticks: Sequence[Tick]) -> Summary:
    replicas = [t.replicas for t in ticks]
    settled = [t.per_replica for t in ticks if t.replicas == t.ready]
    return Summary(
        min(replicas),
        max(replicas),
        sum(1 for a, b in itertools.pairwise(replicas) if a != b),
        direction_changes(replicas),
        sum(1 for t in ticks if t.offered / t.ready > curve.capacity),
        max(t.p99_ms for t in ticks),
        statistics.median(settled),
    )


def compare(curve: Curve, target: float, target_rate: float, args: argparse.Namespace) -> None:
    """The raw gauge against its rate over ``args.window`` (or 60 s), each with and without a scale-up window."""
    window = args.window or 60.0
    print(f"\n## Raw gauge against rate(mlapp_requests_in_flight_seconds_total[{window:g}s])\n")
    print("| load | signal | scale-up window (s) | replicas | changes | direction changes | s past capacity "
          "| worst p99 (ms) | median in flight / replica |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, make in SCENARIOS.items():
        load, seconds = make(target_rate)
        for signal, averaged in (("gauge", 0.0), (f"rate [{window:g}s]", window)):
            for up_window in (0.0, args.compare_up_window):
                behavior = Behavior(up_window=up_window, down_window=args.down_window,
                                    max_replicas=args.max_replicas)  # fmt: skip
                ticks = simulate(curve, target, load, seconds, ready_seconds=args.pod_ready_seconds,
                                 lag_seconds=args.metric_lag_seconds, behavior=behavior, window=averaged,
                                 seed=args.seed)  # fmt: skip
                s = summarize(curve, ticks)
                print(f"| {name} | {signal} | {up_window:g} | {s.low}-{s.high} | {s.changes} | {s.turns} | {s.over} "
                      f"| {s.worst_p99_ms:.1f} | {s.median_per_replica:.2f} |")  # fmt: skip


def report(curve: Curve, target: float, target_rate: float, args: argparse.Namespace) -> None:
    print(f"\nTarget: {target:.2f} in flight per replica (at {target_rate:.0f} req/s a replica; "
          f"a replica sustains {curve.capacity:.0f} req/s)")  # fmt: skip
    print(f"HPA: sync {SYNC_SECONDS:g} s, tolerance {TOLERANCE}, up window {args.up_window:g} s, "
          f"down window {args.down_window:g} s, up policies max(4 pods, 100 %) per 15 s; pods serve "
          f"{args.pod_ready_seconds:g} s after they are made; metric {args.metric_lag_seconds:g} s old; "
          + (f"the HPA reads rate(...[{args.window:g}s])" if args.window else "the HPA reads the gauge"))  # fmt: skip
    behavior = Behavior(up_window=args.up_window, down_window=args.down_window, max_replicas=args.max_replicas)
    for name, make in SCENARIOS.items():
        load, seconds = make(target_rate)
        ticks = simulate(curve, target, load, seconds, ready_seconds=args.pod_ready_seconds,
                         lag_seconds=args.metric_lag_seconds, behavior=behavior, window=args.window,
                         seed=args.seed)  # fmt: skip
        print(f"\n## {name}\n")
        print("| t (s) | offered (req/s) | replicas | serving | in flight / replica | p99 (ms) |")
        print("|---:|---:|---:|---:|---:|---:|")
        shown = -1
        for i, tick in enumerate(ticks):
            changed = i and (tick.replicas != ticks[i - 1].replicas or tick.ready != ticks[i - 1].ready)
            if tick.t % args.every == 0 or (changed and tick.t - shown >= SYNC_SECONDS):
                shown = int(tick.t)
                print(f"| {tick.t:.0f} | {tick.offered:.0f} | {tick.replicas} | {tick.ready} | "
                      f"{tick.per_replica:.2f} | {tick.p99_ms:.1f} |")  # fmt: skip
        s = summarize(curve, ticks)
        print(f"\n{name}: replicas {s.low}-{s.high}, {s.changes} "
              f"changes, {s.turns} direction changes; {s.over} s with a serving replica past "
              f"{curve.capacity:.0f} req/s; worst p99 {s.worst_p99_ms:.1f} ms; median in flight per "
              f"replica when all serve {s.median_per_replica:.2f} (target {target:.2f})")  # fmt: skip
    compare(curve, target, target_rate, args)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rates", default="250,500,1000,1500,2000,2200,2400,2600,2800,3000,3200,3600,4000",
                        help="offered request rates to measure, req/s, comma-separated")  # fmt: skip
    parser.add_argument("--seconds", type=float, default=5.0, help="each rate's measurement")
    parser.add_argument("--rows", type=int, default=64, help="rows per request (64: one full run each)")
    parser.add_argument("--up-window", type=float, default=0.0)
    parser.add_argument("--down-window", type=float, default=300.0)
    parser.add_argument("--max-replicas", type=int, default=100)
    parser.add_argument("--pod-ready-seconds", type=float, default=20.0)
    parser.add_argument("--metric-lag-seconds", type=float, default=15.0)
    parser.add_argument("--every", type=int, default=60, help="print the replica curve every this many seconds")
    parser.add_argument("--window", type=float, default=0.0,
                        help="the HPA reads rate(..._in_flight_seconds_total[W s]); 0: the gauge")  # fmt: skip
    parser.add_argument("--compare-up-window", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--points", type=Path, help="measured points: read from this JSON file if it exists, else "
                        "measured and written there, so the simulation can be rerun on one measurement")  # fmt: skip
    args = parser.parse_args()
    if args.points and args.points.exists():
        saved = json.loads(args.points.read_text())
        points = [Point(**{**p, "in_flight": tuple(p["in_flight"])}) for p in saved]
    else:
        points = measure([float(r) for r in args.rates.split(",")], args.seconds, args.rows)
        if args.points:
            args.points.write_text(json.dumps([dataclasses.asdict(p) for p in points]))
    kept = sustained(points)
    if len(kept) < 2:
        print("fewer than two rates sustained: nothing to build the curve from", file=sys.stderr)
        return 1
    print("\n## One replica, measured\n")
    print(
        "| offered (req/s) | answered (req/s) | in flight (mean) | in flight (p90 of samples) | p50 (ms) | p99 (ms) |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    for p in points:
        p90 = sorted(p.in_flight)[int(len(p.in_flight) * 0.9)] if p.in_flight else 0.0
        print(f"| {p.rate:.0f} | {p.achieved:.0f} | {p.mean_in_flight:.2f} | {p90:.0f} | {p.p50_ms:.2f} | "
              f"{p.p99_ms:.2f} |")  # fmt: skip
    at = knee(kept)
    report(Curve(kept), at.mean_in_flight, at.rate, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
