"""bench/scaling.py: the HPA as its controller computes, Prometheus' rate(), a pod's connection bound, and the stack's
behaviour (mlstack.autoscaling) following a step, a burst and a slow ramp without flapping.

Deterministic: the simulation draws nothing at random, and the replica curve is either synthetic or the measurement
BENCHMARKS.md reports (tests/fixtures/scaling/points.json).
"""

from __future__ import annotations

import inspect
import math
from pathlib import Path
from typing import Literal

import pytest

from bench import scaling
from bench.scaling import (
    KUBERNETES_DEFAULT,
    Bounds,
    Cluster,
    Curve,
    Hpa,
    Point,
    desired_replicas,
    direction_changes,
    extrapolated_rate,
    rate_limited,
    simulate,
    stabilized,
)
from mlapp.settings import Limits
from mlstack import autoscaling, monitoring
from mlstack.autoscaling import Behavior, Policy, Rules

MEASURED = Path(__file__).resolve().parents[1] / "fixtures" / "scaling" / "points.json"


def rules(window: int, *policies: Policy, select: Literal["Max", "Min"] = "Max") -> Rules:
    return Rules(window, policies, select)


DOUBLE_OR_4 = rules(0, Policy("Percent", 100, 15), Policy("Pods", 4, 15))
HALVE_OR_1 = rules(300, Policy("Percent", 50, 60), Policy("Pods", 1, 60))


def one_at_a_time(service_ms: float) -> Curve:
    """A replica that serves one request at a time, Poisson arrivals, exponential service (M/M/1): in flight
    rho / (1 - rho); its time in the server is exponential, so p99 is ln(100) times the mean."""
    capacity = 1000 / service_ms
    points = []
    for tenth in range(1, 10):
        rho = tenth / 10
        mean_ms = service_ms / (1 - rho)
        points.append(
            Point(rho * capacity, rho * capacity, rho / (1 - rho), mean_ms * math.log(2), mean_ms * math.log(100), 0)
        )
    return Curve(scaling.sustained(points))


def test_a_ratio_within_the_tolerance_keeps_the_replicas() -> None:
    assert desired_replicas(10, 1.09, 1.0) == 10, "9 % over the target is within the 0.1 tolerance"
    assert desired_replicas(10, 0.91, 1.0) == 10
    assert desired_replicas(10, 1.11, 1.0) == 12, "ceil(10 * 1.11) past the tolerance"
    assert desired_replicas(10, 0.5, 1.0) == 5
    assert desired_replicas(3, 0.7, 0.7) == 3, "an exact ratio of 1 is not rounded up by floating point"
    assert scaling.TOLERANCE == 0.1, "KEDA 2.17's ScaledObject cannot set the HPA's tolerance: the default holds"


def test_scale_down_waits_for_the_highest_recommendation_of_its_window() -> None:
    behavior = Behavior(DOUBLE_OR_4, rules(300, Policy("Percent", 100, 15)))
    history = [(0.0, 10), (100.0, 4), (200.0, 3)]
    assert stabilized(10, 200.0, history, behavior) == 10, "10 was recommended within the last 300 s"
    assert stabilized(10, 301.0, [*history, (301.0, 3)], behavior) == 4, "10 left the window; 4 is its highest"


def test_scale_up_is_raised_only_to_the_lowest_recommendation_of_its_window() -> None:
    down = rules(300, Policy("Percent", 100, 15))
    assert stabilized(4, 30.0, [(0.0, 2), (15.0, 3), (30.0, 9)], Behavior(DOUBLE_OR_4, down)) == 9
    up_60 = Behavior(rules(60, Policy("Percent", 100, 15)), down)
    assert stabilized(4, 30.0, [(0.0, 5), (15.0, 6), (30.0, 9)], up_60) == 5, "the lowest of 60 s"


def test_select_max_takes_the_policy_allowing_the_most_change_and_min_the_least() -> None:
    most = Behavior(DOUBLE_OR_4, HALVE_OR_1)
    least = Behavior(rules(0, *DOUBLE_OR_4.policies, select="Min"), rules(300, *HALVE_OR_1.policies, select="Min"))
    wide = Bounds(1, 100)
    assert rate_limited(2, 50, 0.0, [], most, bounds=wide) == 6, "4 pods beat 100 % of 2"
    assert rate_limited(10, 50, 0.0, [], most, bounds=wide) == 20, "100 % of 10 beats 4 pods"
    assert rate_limited(2, 50, 0.0, [], least, bounds=wide) == 4, "100 % of 2 is the smaller step"
    assert rate_limited(10, 50, 0.0, [], least, bounds=wide) == 14
    assert rate_limited(10, 1, 0.0, [], most, bounds=wide) == 5, "50 % of 10 beats 1 pod going down"
    assert rate_limited(10, 1, 0.0, [], least, bounds=wide) == 9


def test_a_policy_counts_from_the_replicas_at_the_start_of_its_period_and_rounds_as_the_controller() -> None:
    behavior = Behavior(DOUBLE_OR_4, rules(300, Policy("Percent", 10, 60)))
    wide = Bounds(1, 100)
    assert rate_limited(6, 50, 10.0, [(0.0, 4)], behavior, bounds=wide) == 6, "2 became 6 within the period: no more"
    assert rate_limited(6, 50, 15.0, [(0.0, 4)], behavior, bounds=wide) == 12, "the period ended: doubling again"
    ten_percent_up = Behavior(rules(0, Policy("Percent", 10, 60)), behavior.scale_down)
    assert rate_limited(3, 50, 0.0, [], ten_percent_up, bounds=wide) == 4, "ceil(3 * 1.1): up rounds up"
    assert rate_limited(9, 1, 0.0, [], behavior, bounds=wide) == 8, "int(9 * 0.9): down rounds down, a pod at least"
    assert rate_limited(20, 1, 0.0, [], behavior, bounds=wide) == 18
    assert rate_limited(18, 1, 30.0, [(0.0, -2)], behavior, bounds=wide) == 18, "10 % of 20 already went this minute"


def test_the_replicas_are_held_to_the_scaled_object_s_bounds() -> None:
    behavior = Behavior(DOUBLE_OR_4, rules(300, Policy("Percent", 100, 15)))
    assert rate_limited(10, 500, 0.0, [], behavior, bounds=Bounds(1, 15)) == 15
    assert rate_limited(10, 1, 0.0, [], behavior, bounds=Bounds(3, 15)) == 3


def test_a_new_hpa_scales_down_only_a_window_after_it_was_made_then_to_the_load() -> None:
    behavior = Behavior(DOUBLE_OR_4, rules(300, Policy("Percent", 100, 15)))
    hpa = Hpa(target=1.0, replicas=10, behavior=behavior, created=0.0)
    assert hpa.sync(15.0, 2.0) == 10, "a new HPA holds its replicas through the down window"
    assert hpa.sync(299.0, 2.0) == 10
    assert hpa.sync(300.0, 2.0) == 2, "ceil(total 2 / target 1) once every higher recommendation has left the window"


def test_direction_changes_count_turns_not_steps() -> None:
    assert direction_changes([1, 2, 4, 8, 8, 4, 2]) == 1
    assert direction_changes([2, 3, 2, 3, 2]) == 3
    assert direction_changes([5, 5, 5]) == 0


def test_rate_is_the_mean_over_the_samples_extrapolated_as_prometheus_does() -> None:
    # A counter rising 1 a second, sampled every 30 s across a 120 s range: the rate is 1.
    steady = [(float(t), 100.0 + t) for t in (10, 40, 70, 100)]
    assert extrapolated_rate(steady, -10.0, 110.0) == pytest.approx(1.0)
    # Starting at 0 inside the range (a new pod), it is not extrapolated back past its zero.
    new = [(float(t), float(t - 10)) for t in (10, 40, 70, 100)]
    assert extrapolated_rate(new, -10.0, 110.0) == pytest.approx(100 / 120)
    # The newest samples not yet queryable: the end is extrapolated by half an interval only, so it reads low.
    late = steady[:2]
    assert extrapolated_rate(late, -10.0, 110.0) == pytest.approx((30 + 20 + 15) / 120)
    assert extrapolated_rate(steady[:1], -10.0, 110.0) is None, "a rate needs two samples"


def test_the_hpa_reads_the_mean_over_the_query_s_window() -> None:
    """Ten seconds past capacity fill two pods to their connection bound; the mean the HPA reads stays far past its
    target until those seconds leave the range, W = query_window_seconds(scrape) later, give or take a scrape."""
    curve = one_at_a_time(1.0)
    fixed = Cluster(bounds=Bounds(2, 2), warmup_seconds=300)
    normal = curve.rate_at(0.5) * 2

    def load(t: float) -> float:
        return 10 * normal if 600 <= t < 610 else normal

    ticks = simulate(curve, 0.5, load, 1200, cluster=fixed)
    high = [t.t for t in ticks if t.total is not None and t.total > 10]
    window = autoscaling.query_window_seconds(monitoring.SERVER_SCRAPE_SECONDS)
    assert high, "the overload never showed"
    assert min(high) <= 600 + fixed.scrape_seconds + scaling.SYNC_SECONDS
    assert (
        610 + window - fixed.scrape_seconds - scaling.SYNC_SECONDS <= max(high) <= 610 + window + scaling.SYNC_SECONDS
    )
    steady = [t for t in ticks if t.t > 610 + window + 2 * fixed.scrape_seconds]
    assert all(t.total == pytest.approx(t.in_flight) for t in steady), "at a steady load the mean is the in flight"


def test_a_pod_holds_at_most_its_connections_and_refuses_the_rest() -> None:
    curve = one_at_a_time(1.0)  # sustains 900 req/s
    alone = Cluster(bounds=Bounds(1, 1), warmup_seconds=0)
    ticks = simulate(curve, 0.5, lambda t: curve.capacity + 100, 60, cluster=alone)
    assert scaling.MAX_CONNECTIONS == Limits().max_connections == alone.max_connections == 512
    assert max(t.in_flight for t in ticks) == pytest.approx(512), "in flight past the pod's connection bound"
    full = [t for t in ticks if t.in_flight == pytest.approx(512)]
    assert full, "the queue never reached the bound"
    assert all(t.refused == pytest.approx(100) for t in full[1:]), "arrivals past the bound are refused, no more"
    assert sum(t.refused for t in ticks[:3]) == 0, "nothing is refused while the queue has room"
    queue_ms = (512 - curve.in_flight(curve.capacity)) / curve.capacity * 1000
    assert full[-1].p99_ms == pytest.approx(curve.p99_ms(curve.capacity) + queue_ms), "a queued request waits"


def test_the_simulation_runs_on_the_stack_s_behaviour_target_and_query_window() -> None:
    assert inspect.signature(simulate).parameters["behavior"].default is autoscaling.BEHAVIOR
    assert inspect.signature(scaling.run).parameters["behavior"].default is autoscaling.BEHAVIOR
    assert inspect.signature(scaling.run).parameters["target"].default == autoscaling.DEFAULT_TARGET_IN_FLIGHT
    assert Cluster().scrape_seconds == monitoring.SERVER_SCRAPE_SECONDS
    for scrape in (15, 30, 60):
        assert Cluster(scrape_seconds=scrape).window_seconds == autoscaling.query_window_seconds(scrape)
    # The default run is the stack's: the same replicas as naming its behaviour, not those of Kubernetes' default.
    curve = Curve(tuple(scaling.load_points(MEASURED)))
    step = scaling.SCENARIOS[0]
    unit = scaling.knee(curve.points).rate

    def load(t: float) -> float:
        return unit * step.units(t)

    ours = simulate(curve, 0.5, load, step.seconds)
    assert ours == simulate(curve, 0.5, load, step.seconds, behavior=autoscaling.BEHAVIOR)
    assert ours != simulate(curve, 0.5, load, step.seconds, behavior=KUBERNETES_DEFAULT)


def test_a_steady_load_at_the_target_keeps_the_replicas() -> None:
    curve = one_at_a_time(10.0)
    per_replica = curve.rate_at(autoscaling.DEFAULT_TARGET_IN_FLIGHT)
    ticks = simulate(curve, autoscaling.DEFAULT_TARGET_IN_FLIGHT, lambda t: 8 * per_replica, 1200)
    assert {t.replicas for t in ticks} == {8}


def measured() -> tuple[Curve, float]:
    points = scaling.load_points(MEASURED)
    kept = scaling.sustained(points)
    return Curve(kept), scaling.knee(kept).rate


@pytest.mark.parametrize(
    "cluster",
    [Cluster(), Cluster(scrape_seconds=monitoring.ANNOTATION_SCRAPE_SECONDS), Cluster(ready_seconds=60)],
    ids=["cloud", "local Prometheus", "pods serve after 60 s"],
)
def test_the_stack_s_behaviour_follows_each_load_on_the_measured_replica_without_flapping(cluster: Cluster) -> None:
    curve, unit = measured()
    for scenario, _, s in scaling.run(curve, unit, cluster=cluster):
        name = scenario.name
        assert s.turns <= s.load_turns, f"{name}: the replicas turned {s.turns} times, the load {s.load_turns}"
        assert s.high < cluster.bounds.max_replicas, f"{name}: overshot to the max"
        assert s.high <= 1.5 * s.needed_peak, f"{name}: {s.high} replicas for a peak that needs {s.needed_peak}"
        assert s.follows, f"{name}: a held load ended short of what it needs: {s.phases}"
        assert s.over <= 150 if name != "slow ramp" else s.over == 0, f"{name}: {s.over} s past capacity"
        calm = [p for p in s.phases if not p.refused_share]
        floor = curve.points[0].p99_ms
        for p in calm:
            assert p.p99_ms <= scaling.KNEE * floor, f"{name}, {p.phase.name}: p99 {p.p99_ms:.1f} ms"


@pytest.mark.parametrize("service_ms", [1.0, 50.0])
def test_the_default_target_follows_each_load_on_a_replica_serving_one_request_at_a_time(service_ms: float) -> None:
    """The default is for models nobody measured: on an M/M/1 replica of any speed (its knee at 1 in flight) the
    stack's target and behaviour follow the three loads without flapping."""
    curve = one_at_a_time(service_ms)
    unit = scaling.knee(curve.points).rate
    for scenario, _, s in scaling.run(curve, unit):
        assert s.turns <= s.load_turns, f"{scenario.name}: turned {s.turns} times"
        assert s.follows, f"{scenario.name}: a held load ended short of what it needs: {s.phases}"
        assert s.high <= 1.5 * s.needed_peak, (
            f"{scenario.name}: {s.high} replicas for a peak that needs {s.needed_peak}"
        )


def test_kubernetes_default_behaviour_at_the_knee_overshoots_or_flaps_on_the_same_replica() -> None:
    """What the stack rendered before: the same check fails, so the one above can."""
    curve, unit = measured()
    knee_in_flight = curve.in_flight(unit)
    summaries = [s for _, _, s in scaling.run(curve, unit, target=knee_in_flight, behavior=KUBERNETES_DEFAULT)]
    assert any(s.high == Bounds().max_replicas or s.turns > s.load_turns for s in summaries)
