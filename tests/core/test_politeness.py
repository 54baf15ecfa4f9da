"""The pure per-host pacing policy: token-bucket spacing, host-wide Retry-After pauses, and AIMD
(halve on push-back, recover a little per success, bounded). Time is passed in: nothing sleeps."""

from __future__ import annotations

import pytest

from fanfetch.core.politeness import AimdPolicy, HostPace, bound_fleet


def test_requests_are_spaced_one_over_the_rate():
    # GIVEN a host limited to 4 requests/s
    pace = HostPace(4.0, now=0.0)
    # WHEN 9 requests ask at the same instant
    waits = [pace.reserve(0.0, latest=100.0) for _ in range(9)]
    # THEN they start 0.25 s apart: the 9th after 2 s (= (N - 1) / R)
    assert waits == pytest.approx([i * 0.25 for i in range(9)])


def test_a_slot_past_the_latest_start_is_refused_and_not_claimed():
    pace = HostPace(1.0, now=0.0)
    assert pace.reserve(0.0, latest=0.5) == 0.0
    # GIVEN the next slot is at 1.0 / WHEN a request may wait only until 0.5 / THEN refused
    assert pace.reserve(0.0, latest=0.5) is None
    # AND the refused request did not push later ones back
    assert pace.reserve(0.0, latest=5.0) == pytest.approx(1.0)


def test_an_unlimited_host_never_waits_until_it_pushes_back():
    pace = HostPace(None, now=0.0)
    assert all(pace.reserve(0.0, latest=0.0) == 0.0 for _ in range(100))
    assert pace.rate is None


def test_a_throttle_halves_the_rate_and_successes_recover_it_within_bounds():
    # GIVEN a host at 10 requests/s
    pace = HostPace(10.0, policy=AimdPolicy(decrease_factor=0.5, increase_fraction=0.1, floor_rps=1.0))
    # WHEN it answers 429 / THEN the rate halves
    pace.on_throttle(0.0)
    assert pace.rate == pytest.approx(5.0)
    # WHEN it keeps answering 429 / THEN the rate never drops below the floor
    for _ in range(10):
        pace.on_throttle(0.0)
    assert pace.rate == pytest.approx(1.0)
    # WHEN successes follow / THEN it climbs additively (1 rps per success here), up to the setting
    pace.on_success()
    assert pace.rate == pytest.approx(2.0)
    for _ in range(20):
        pace.on_success()
    assert pace.rate == pytest.approx(10.0)


def test_retry_after_pauses_the_whole_host_bounded_by_the_policy():
    # GIVEN an unlimited host that answers 503 with Retry-After: 30 (policy bound 20 s)
    pace = HostPace(None, policy=AimdPolicy(max_block_s=20.0), now=0.0)
    pace.on_throttle(10.0, retry_after_s=30.0)
    # WHEN another request asks at t=11 / THEN it waits until t=30, not t=40
    assert pace.reserve(11.0, latest=100.0) == pytest.approx(19.0)
    # AND a request that must start before t=25 is refused
    assert pace.reserve(11.0, latest=25.0) is None


def test_an_unlimited_host_slows_to_half_the_rate_it_was_seen_at_then_becomes_unlimited_again():
    # GIVEN an unlimited host receiving 20 requests/s for 2 s
    pace = HostPace(None, policy=AimdPolicy(increase_fraction=0.1), now=0.0)
    for i in range(40):
        assert pace.reserve(i * 0.05, latest=100.0) == 0.0
    # WHEN it answers 429
    pace.on_throttle(2.0)
    # THEN it is paced at about half the observed rate
    assert pace.rate == pytest.approx(10.0, rel=0.1)
    # WHEN enough successes follow / THEN the limit is lifted again
    for _ in range(10):
        pace.on_success()
    assert pace.rate is None


def test_bad_settings_are_refused():
    with pytest.raises(ValueError):
        HostPace(0.0)
    with pytest.raises(ValueError):
        AimdPolicy(decrease_factor=1.0)


def test_the_fleet_bound_is_invocations_times_the_per_worker_limit():
    # GIVEN 50 concurrent invocations of 16 downloads each, capped at 4 per host and 5 requests/s
    bound = bound_fleet(invocations=50, files_in_flight=16, per_host_concurrency=4, per_host_rps=5.0)
    # THEN one host may see 200 requests in flight and 250 starts per second, fleet-wide
    assert (bound.in_flight, bound.rps) == (200, 250.0)
    # AND 194,204 files from that host need at least 194,204 / 250 s
    assert bound.min_wall_s(194_204) == pytest.approx(776.816)


def test_without_per_host_limits_the_bound_is_every_download_in_flight():
    bound = bound_fleet(invocations=50, files_in_flight=16, per_host_concurrency=None, per_host_rps=None)
    assert (bound.in_flight, bound.rps, bound.min_wall_s(10)) == (800, None, None)
    # AND a per-host cap above the downloads in flight changes nothing
    assert bound_fleet(invocations=50, files_in_flight=16, per_host_concurrency=64, per_host_rps=None).in_flight == 800
