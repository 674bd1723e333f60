"""The collector's arithmetic on recorded counter sequences: rates, resets, hotplug, gaps and clock steps.

The sequences are shaped like libvirt 9.0's bulk stats (cumulative nanoseconds, vCPU time in 10 ms steps);
the first is a real burner guest's counters one second apart.
"""

from __future__ import annotations

import pytest

from hosts.libvirt.facts import GuestCPUCounters, HostCPUCounters, StatsSample
from hosts.live.history import MinuteBuckets
from hosts.live.rates import guest_load, host_cpu_busy, host_load

S = 1_000_000_000


def guest(uuid: str, cpu: int, vcpus: dict[int, int], delays: dict[int, int] | None = None) -> GuestCPUCounters:
    return GuestCPUCounters(
        uuid=uuid, name=uuid, cpu_time=cpu, vcpu_time=vcpus, vcpu_delay=delays or dict.fromkeys(vcpus, 0)
    )


def sample(mono: float, *guests: GuestCPUCounters, cpus: tuple[HostCPUCounters, ...] = (), wall: float = 0.0):
    return StatsSample(mono=mono, wall=wall or 1_700_000_000 + mono, guests=guests, host_cpus=cpus, round_trips=1)


def test_a_burning_vcpu_reads_one_hundred_percent_and_the_rest_is_emulator_overhead() -> None:
    before = guest("burn", 50 * S, {0: 48 * S}, {0: 1 * S})
    after = guest("burn", 51_030_000_000, {0: 49 * S}, {0: 1_050_000_000})
    load = guest_load(before, after, 1.0)
    assert load is not None
    assert load.vcpu == {0: pytest.approx(100.0)}
    assert load.delay == {0: pytest.approx(5.0)}
    assert load.overhead == pytest.approx(3.0)
    assert load.total == pytest.approx(103.0)


def test_rates_are_divided_by_the_real_interval_not_the_nominal_tick() -> None:
    load = guest_load(guest("g", 0, {0: 0}), guest("g", S, {0: S}), 2.0)
    assert load is not None and load.vcpu[0] == pytest.approx(50.0)


def test_a_capped_vcpu_reads_its_cap() -> None:
    load = guest_load(guest("g", 10 * S, {0: 9 * S}), guest("g", 10_210_000_000, {0: 9_200_000_000}), 1.0)
    assert load is not None and load.vcpu[0] == pytest.approx(20.0)


def test_a_guest_restart_that_resets_its_counters_yields_no_rate_and_the_next_interval_is_normal() -> None:
    running = guest("g", 500 * S, {0: 400 * S, 1: 90 * S})
    restarted = guest("g", 200_000_000, {0: 100_000_000, 1: 50_000_000})
    assert guest_load(running, restarted, 1.0) is None
    later = guest("g", 700_000_000, {0: 400_000_000, 1: 150_000_000})
    load = guest_load(restarted, later, 1.0)
    assert load is not None and load.vcpu == {0: pytest.approx(30.0), 1: pytest.approx(10.0)}


def test_one_vcpu_counter_going_back_counts_as_a_restart_even_if_the_total_grew() -> None:
    assert guest_load(guest("g", S, {0: S, 1: S}), guest("g", 3 * S, {0: 2 * S, 1: 0}), 1.0) is None


def test_a_hotplugged_vcpu_has_no_rate_until_its_second_sample_and_overhead_is_withheld() -> None:
    before = guest("g", 10 * S, {0: 5 * S, 1: 4 * S})
    plugged = guest("g", 11_500_000_000, {0: 5_500_000_000, 1: 4_500_000_000, 2: 300_000_000})
    load = guest_load(before, plugged, 1.0)
    assert load is not None
    assert set(load.vcpu) == {0, 1}
    assert load.overhead is None  # vCPU 2's time since the plug would otherwise show up as overhead
    after = guest("g", 12_400_000_000, {0: 5_800_000_000, 1: 4_800_000_000, 2: 600_000_000})
    load = guest_load(plugged, after, 1.0)
    assert load is not None and set(load.vcpu) == {0, 1, 2}
    assert load.overhead == pytest.approx(0.0)


def test_sparse_vcpu_numbers_keep_their_own_numbers() -> None:
    before = guest("g", 0, {0: 0, 2: 0, 5: 0})
    after = guest("g", 600_000_000, {0: 100_000_000, 2: 200_000_000, 5: 300_000_000})
    load = guest_load(before, after, 1.0)
    assert load is not None
    assert load.vcpu == {0: pytest.approx(10.0), 2: pytest.approx(20.0), 5: pytest.approx(30.0)}


def test_a_single_vcpu_never_reads_above_one_cpu_however_the_counters_jitter() -> None:
    load = guest_load(guest("g", 0, {0: 0}), guest("g", 1_070_000_000, {0: 1_040_000_000}), 1.0)
    assert load is not None and load.vcpu[0] == 100.0


def test_guests_that_appear_or_vanish_between_samples_are_left_out() -> None:
    stays_a = guest("stays", 0, {0: 0}), guest("stays", S // 2, {0: S // 2})
    load = host_load(
        sample(10.0, stays_a[0], guest("vanishes", 0, {0: 0})),
        sample(11.0, stays_a[1], guest("appears", 9 * S, {0: 9 * S})),
        max_dt=5,
    )
    assert load is not None
    assert set(load.guests) == {"stays"}
    assert load.guests["stays"].vcpu[0] == pytest.approx(50.0)


@pytest.mark.parametrize("dt", [0.0, -0.5])
def test_an_interval_of_zero_or_less_is_dropped(dt: float) -> None:
    a, b = guest("g", 0, {0: 0}), guest("g", S, {0: S})
    assert host_load(sample(10.0, a), sample(10.0 + dt, b), max_dt=5) is None


def test_an_interval_longer_than_allowed_is_a_gap_not_an_average() -> None:
    a, b = guest("g", 0, {0: 0}), guest("g", 30 * S, {0: 30 * S})
    assert host_load(sample(10.0, a), sample(40.0, b), max_dt=3.5) is None


def test_a_wall_clock_step_does_not_change_the_rates() -> None:
    a, b = guest("g", 0, {0: 0}), guest("g", S // 4, {0: S // 4})
    stepped_back = host_load(sample(10.0, a, wall=1_700_000_100), sample(11.0, b, wall=1_700_000_000), max_dt=5)
    assert stepped_back is not None
    assert stepped_back.guests["g"].vcpu[0] == pytest.approx(25.0)
    assert stepped_back.wall == 1_700_000_000  # the frame is placed at the sample's own wall time


def test_host_cpu_busy_comes_from_its_own_busy_and_total_counters() -> None:
    before = sample(0.0, cpus=(HostCPUCounters(0, 10 * S, 40 * S), HostCPUCounters(1, 5 * S, 40 * S)))
    after = sample(1.0, cpus=(HostCPUCounters(0, 10_750_000_000, 41 * S), HostCPUCounters(1, 5 * S, 41 * S)))
    assert host_cpu_busy(before, after) == {0: pytest.approx(75.0), 1: pytest.approx(0.0)}


def test_a_host_cpu_whose_counters_went_back_or_that_just_came_online_is_left_out() -> None:
    before = sample(0.0, cpus=(HostCPUCounters(0, 10 * S, 40 * S),))
    after = sample(1.0, cpus=(HostCPUCounters(0, 1 * S, 2 * S), HostCPUCounters(1, S, 2 * S)))
    assert host_cpu_busy(before, after) == {}


def test_minute_buckets_average_each_vcpu_and_emit_a_minute_once_it_is_over() -> None:
    buckets = MinuteBuckets()
    assert buckets.add("guest", 7, {"t": 600.0, "n": [0, 1], "v": [100.0, 10.0], "d": [0.0, 2.0], "o": 3.0}) is None
    assert buckets.add("guest", 7, {"t": 630.0, "n": [0], "v": [50.0], "d": [4.0], "o": 1.0}) is None
    minute = buckets.add("guest", 7, {"t": 660.0, "n": [0], "v": [0.0], "d": [0.0], "o": 0.0})
    assert minute == {"t": 600, "o": 2.0, "n": [0, 1], "v": [75.0, 10.0], "d": [2.0, 2.0]}
