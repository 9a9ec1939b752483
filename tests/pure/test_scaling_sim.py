"""bench/scaling.py's HPA: the documented algorithm's tolerance, stabilization window and scale-up limit."""

from __future__ import annotations

from bench.scaling import (
    Behavior,
    Curve,
    Hpa,
    Point,
    desired_replicas,
    direction_changes,
    rate_limited,
    simulate,
    stabilized,
)


def test_a_ratio_within_the_tolerance_keeps_the_replicas() -> None:
    assert desired_replicas(10, 1.09, 1.0) == 10, "9 % over the target is within the 0.1 tolerance"
    assert desired_replicas(10, 0.91, 1.0) == 10
    assert desired_replicas(10, 1.11, 1.0) == 12, "ceil(10 * 1.11) past the tolerance"
    assert desired_replicas(10, 0.5, 1.0) == 5
    assert desired_replicas(3, 0.7, 0.7) == 3, "an exact ratio of 1 is not rounded up by floating point"


def test_scale_down_waits_for_the_highest_recommendation_of_its_window() -> None:
    behavior = Behavior(down_window=300)
    history = [(0.0, 10), (100.0, 4), (200.0, 3)]
    assert stabilized(10, 200.0, history, behavior) == 10, "10 was recommended within the last 300 s"
    assert stabilized(10, 301.0, [*history, (301.0, 3)], behavior) == 4, "10 left the window; 4 is its highest"


def test_scale_up_is_not_stabilized_with_a_zero_window() -> None:
    assert stabilized(4, 30.0, [(0.0, 2), (15.0, 3), (30.0, 9)], Behavior(up_window=0)) == 9
    assert stabilized(4, 30.0, [(0.0, 5), (15.0, 6), (30.0, 9)], Behavior(up_window=60)) == 5, "the lowest of 60 s"


def test_scale_up_is_limited_to_the_larger_of_4_pods_and_100_percent_per_15_s() -> None:
    behavior = Behavior()
    assert rate_limited(2, 50, 0.0, [], behavior) == 6, "4 pods beat 100 % of 2"
    assert rate_limited(10, 50, 0.0, [], behavior) == 20, "100 % of 10 beats 4 pods"
    assert rate_limited(6, 50, 10.0, [(0.0, 4)], behavior) == 6, "2 became 6 within the period: no more yet"
    assert rate_limited(6, 50, 15.0, [(0.0, 4)], behavior) == 12, "the period ended: doubling again"
    assert rate_limited(10, 500, 0.0, [], Behavior(max_replicas=15)) == 15


def test_an_hpa_scales_down_only_after_its_window_then_to_the_load() -> None:
    hpa = Hpa(target=1.0, replicas=10, behavior=Behavior(down_window=300))
    assert hpa.sync(15.0, 0.2) == 10, "a new HPA holds its replicas through the down window"
    assert hpa.sync(299.0, 0.2) == 10
    assert hpa.sync(300.0, 0.2) == 2, "ceil(10 * 0.2) once every higher recommendation has left the window"


def test_direction_changes_count_turns_not_steps() -> None:
    assert direction_changes([1, 2, 4, 8, 8, 4, 2]) == 1
    assert direction_changes([2, 3, 2, 3, 2]) == 3
    assert direction_changes([5, 5, 5]) == 0


# A replica whose scrapes read 0 three times in four and 3 once at 2,000 req/s, the most it sustains: 0.75 in
# flight on average.
NOISY = Curve(
    (
        Point(1000.0, 1000.0, (0.0, 0.0, 0.0, 1.0), 1.0, 2.0, 0),
        Point(2000.0, 2000.0, (0.0, 0.0, 0.0, 3.0), 1.0, 2.0, 0),
    )
)


def test_a_steady_load_at_the_target_keeps_the_replicas_on_the_averaged_signal_and_not_on_one_scrape() -> None:
    """Eight replicas at 2,000 req/s each hold 0.75 in flight on average: the window's mean is the target, so
    the HPA never moves; one scrape of each reads 0 or 3, and the sum it divides swings past the tolerance."""

    def load(t: float) -> float:
        return 8 * 2000.0

    averaged = simulate(NOISY, 0.75, load, 1200, ready_seconds=20, lag_seconds=15, window=60, seed=1)
    assert {t.replicas for t in averaged} == {8}, "rate() over 60 s at the target moved the replicas"
    raw = simulate(NOISY, 0.75, load, 1200, ready_seconds=20, lag_seconds=15, seed=1)
    assert len({t.replicas for t in raw}) > 1, "one scrape of a 0-or-3 gauge summed over 8 never left the tolerance"
