"""The cost and ramp model behind ``fanfetch plan``: counts, prices and the SQS event source ramp."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fanfetch.core.costmodel import CPU_PER_FILE_S, MB_PER_VCPU, PRICES, PlanInput, estimate, simulate_ramp, vcpu_share


def test_below_the_starting_five_batches_the_ramp_does_not_matter():
    # GIVEN a maximum concurrency the event source reaches at once (5 concurrent batches at the start)
    # WHEN 12 invocations of 10 s run at most 4 at a time
    wall = simulate_ramp(12, 10.0, max_concurrency=4)
    # THEN they run in ceil(12 / 4) = 3 waves
    assert wall == pytest.approx(30.0)


def test_a_high_maximum_is_reached_only_through_the_ramp():
    # GIVEN 1,000 invocations of 60 s each and a maximum of 1,000
    # WHEN the event source ramps from 5 batches, adding 300 per minute (one every 0.2 s)
    wall = simulate_ramp(1000, 60.0, max_concurrency=1000)
    # THEN the job takes longer than one wave, yet no longer than a ramp that never grew past its start
    assert 60.0 < wall < math.ceil(1000 / 5) * 60.0
    # AND the fluid bound holds: work done by 5 + 5 t slots, all 60,000 invocation-seconds
    fluid = (-5 + math.sqrt(25 + 4 * 2.5 * 60_000)) / 5
    assert fluid <= wall <= fluid + 60.0


def test_a_slower_ramp_takes_longer():
    # GIVEN the same job under today's ramp (300/min) and the pre-2023 one (60/min)
    fast = simulate_ramp(8324, 40.0, max_concurrency=1000)
    slow = simulate_ramp(8324, 40.0, max_concurrency=1000, per_minute=60)
    # THEN the slower ramp finishes later
    assert slow > fast


@given(
    invocations=st.integers(1, 400),
    duration=st.floats(0.1, 100),
    low=st.integers(1, 60),
    extra=st.integers(0, 60),
)
def test_more_concurrency_is_never_slower(invocations, duration, low, extra):
    # GIVEN two maximum concurrencies, one at least the other
    # WHEN the same invocations run under each
    # THEN the higher one finishes no later
    higher = simulate_ramp(invocations, duration, max_concurrency=low + extra)
    assert higher <= simulate_ramp(invocations, duration, max_concurrency=low) + 1e-6


def test_the_estimate_counts_invocations_duration_and_prices():
    # GIVEN 95 groups of 20 files, 2 s per file, batches of 10, 8 files in flight, 2048 MB
    job = PlanInput(
        groups=95,
        files=1900,
        per_file_s=2.0,
        batch_size=10,
        files_in_flight=8,
        lambda_memory_mb=2048,
        invoke_overhead_s=0.0,
        max_concurrency=5,
    )
    # WHEN it is estimated
    plan = estimate(job)
    # THEN 10 invocations each download 190 files in ceil(190 / 8) = 24 rounds of 2 s
    assert plan.invocations == 10 and plan.send_calls == 10
    assert plan.invocation_s == pytest.approx(48.0)
    assert plan.gb_seconds == pytest.approx(10 * 48.0 * 2)
    # AND the cost is the list prices times the counts
    assert plan.lambda_duration_usd == pytest.approx(plan.gb_seconds * PRICES.lambda_per_gb_s_x86)
    assert plan.lambda_request_usd == pytest.approx(10 * 0.20 / 1e6)
    assert plan.s3_puts == 96 and plan.s3_usd == pytest.approx(96 * 0.005 / 1000)
    assert plan.total_usd == pytest.approx(
        plan.lambda_request_usd + plan.lambda_duration_usd + plan.sqs_usd + plan.s3_usd
    )
    # AND at most 5 run at once: two waves
    assert plan.wall_s == pytest.approx(96.0)
    assert plan.serial_s == pytest.approx(3800.0)


def test_downloading_inside_an_invocation_concurrently_divides_the_billed_time():
    # GIVEN the motivating job, downloaded one file at a time per invocation vs 16 at a time
    serial = estimate(PlanInput(groups=8324, files=194_204, per_file_s=1.7, files_in_flight=1))
    fanned = estimate(PlanInput(groups=8324, files=194_204, per_file_s=1.7, files_in_flight=16))
    # THEN the concurrent worker is billed for over ten times fewer GB-seconds
    assert fanned.gb_seconds * 10 < serial.gb_seconds


def test_an_invocation_longer_than_the_timeout_is_flagged():
    plan = estimate(PlanInput(groups=10, files=1000, per_file_s=5.0, files_in_flight=1, lambda_timeout_s=300))
    assert plan.exceeds_timeout


def test_an_empty_job_costs_nothing_and_takes_no_time():
    plan = estimate(PlanInput(groups=0, files=0, per_file_s=1.0))
    assert plan.invocations == 0 and plan.wall_s == 0 and plan.gb_seconds == 0


@pytest.mark.parametrize("field", ["max_concurrency", "batch_size", "files_in_flight", "lambda_memory_mb"])
def test_knobs_below_one_are_refused(field):
    with pytest.raises(ValueError, match=field):
        PlanInput(groups=1, files=1, per_file_s=1.0, **{field: 0})


# --- the worker's CPU share -----------------------------------------------------------------------


def test_a_vcpu_is_1769_mb_and_the_share_is_proportional_below_and_capped_at_six():
    assert vcpu_share(MB_PER_VCPU) == pytest.approx(1.0)
    assert vcpu_share(256) == pytest.approx(256 / 1769)
    assert vcpu_share(10_240) == pytest.approx(10_240 / 1769)
    assert vcpu_share(20_000) == 6


def test_a_small_lambda_with_fast_downloads_is_bound_by_its_cpu_share():
    # GIVEN 10 groups of 1,000 files, 20 ms each, 16 in flight (800 files/s by latency), 256 MB, 0.5 ms CPU per file
    job = PlanInput(groups=10, files=10_000, per_file_s=0.02, files_in_flight=16, lambda_memory_mb=256,
                    batch_size=10, invoke_overhead_s=0.0, cpu_per_file_s=0.0005)
    # WHEN it is estimated
    plan = estimate(job)
    # THEN its 0.145 vCPU caps the worker at 0.145 / 0.5 ms = 289 files/s, below the latency's 800
    assert plan.vcpus == pytest.approx(256 / 1769)
    assert plan.cpu_files_per_s == pytest.approx(256 / 1769 / 0.0005)
    assert plan.latency_files_per_s == pytest.approx(800)
    assert plan.cpu_bound
    # AND the one invocation lasts as long as its CPU needs, and is billed for it
    assert plan.invocation_s == pytest.approx(10_000 / plan.cpu_files_per_s)
    assert plan.gb_seconds == pytest.approx(plan.invocation_s * 256 / 1024)


def test_the_motivating_job_is_bound_by_latency_and_its_estimate_is_unchanged():
    # GIVEN 1.7 s per file, 16 in flight (9.4 files/s) at 1,024 MB with the measured CPU per file
    plan = estimate(PlanInput(groups=8324, files=194_204, per_file_s=1.7, files_in_flight=16))
    # THEN latency sets the pace, far below what the CPU share allows, and the duration is the rounds of 1.7 s
    assert not plan.cpu_bound
    assert plan.cpu_files_per_s == pytest.approx((1024 / 1769) / CPU_PER_FILE_S)
    assert plan.invocation_s == pytest.approx(math.ceil(194_204 / 833 / 16) * 1.7 + 0.05)


def test_memory_beyond_one_vcpu_does_not_speed_up_one_process():
    # GIVEN a CPU-bound job (no latency to speak of)
    def at(memory_mb: int) -> float:
        job = PlanInput(groups=10, files=10_000, per_file_s=0.001, lambda_memory_mb=memory_mb,
                        invoke_overhead_s=0.0, cpu_per_file_s=0.001)
        return estimate(job).invocation_s

    # THEN doubling memory below 1,769 MB halves the time, and above it changes nothing (one GIL-bound process)
    assert at(512) == pytest.approx(2 * at(1024))
    assert at(3538) == pytest.approx(at(1769)) == pytest.approx(10.0)


@given(
    per_file_s=st.floats(0.001, 10),
    cpu_per_file_s=st.floats(0.00001, 0.01),
    memory_mb=st.integers(128, 10_240),
    files_in_flight=st.integers(1, 64),
)
def test_an_invocation_never_beats_either_bound(per_file_s, cpu_per_file_s, memory_mb, files_in_flight):
    # GIVEN any pace of downloads and CPU
    job = PlanInput(groups=10, files=1000, per_file_s=per_file_s, cpu_per_file_s=cpu_per_file_s,
                    lambda_memory_mb=memory_mb, files_in_flight=files_in_flight, invoke_overhead_s=0.0)
    plan = estimate(job)
    # THEN the invocation takes at least what latency needs and at least what its CPU share needs
    assert plan.invocation_s >= 1000 / plan.latency_files_per_s - 1e-9
    assert plan.invocation_s >= 1000 * cpu_per_file_s / min(vcpu_share(memory_mb), 1.0) - 1e-9
    assert plan.cpu_bound == (plan.cpu_files_per_s < plan.latency_files_per_s)
