"""Pin profiles: validation names every bad field, and plans place threads where the strategy says.

These are pure unit tests: the planner reads snapshots, so a synthetic host stands in for a real one here.
The host is two sockets (NUMA cells) of four cores with two hyperthreads each, numbered the way Linux does:
CPUs 0-3 and 8-11 are socket 0 (CPU n and n+8 share a core), CPUs 4-7 and 12-15 are socket 1. CPUs 0 and 8
are the housekeeping partition, so the guest pool is 1-7,9-15 (six CPUs in cell 0, eight in cell 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hosts.cpulist import parse_cpulist
from hosts.planning.holdings import dedicated_holders
from hosts.planning.planner import diff, plan_change
from hosts.planning.schema import (
    PROFILE_KEYS,
    THREADPIN_STRATEGIES,
    VCPUPIN_STRATEGIES,
    ProfileError,
    ProfileSpec,
    validate_profile,
)
from hosts.planning.types import CPUInfo, GuestPlan, GuestState, HostLayout, Issue
from hosts.vocabulary import SCHED_NAMES, percent_to_quota, quota_to_percent

HOST_ID = 1


def make_host(housekeeping: frozenset[int] = frozenset({0, 8}), offline: frozenset[int] = frozenset()) -> HostLayout:
    cpus = []
    for cpu_id in range(16):
        thread0 = cpu_id % 8
        cpus.append(
            CPUInfo(
                cpu_id=cpu_id,
                cell_id=thread0 // 4,
                socket_id=thread0 // 4,
                core_id=thread0 % 4,
                siblings=frozenset({thread0, thread0 + 8}),
                online=cpu_id not in offline,
            )
        )
    return HostLayout(host_id=HOST_ID, name="kvm1", cpus=tuple(cpus), housekeeping=housekeeping)


def tuning(
    vcpupin: dict[int, str] | None = None, emulatorpin: str = "0-15", iothreadpin: dict[int, str] | None = None
) -> dict[str, Any]:
    return {
        "vcpupin": {str(n): pin for n, pin in (vcpupin or {}).items()},
        "emulatorpin": emulatorpin,
        "iothreadpin": {str(n): pin for n, pin in (iothreadpin or {}).items()},
        "sched": {"cpu_shares": 1024, "vcpu_period": 100000, "vcpu_quota": -1},
    }


def make_guest(
    domain_id: int,
    vcpus: int = 2,
    *,
    state: str = "running",
    pins: dict[int, str] | None = None,
    emulatorpin: str = "0-15",
    iothreads: tuple[int, ...] = (),
    placement: str = "static",
    live: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
) -> GuestState:
    current = tuning(pins or dict.fromkeys(range(vcpus), "0-15"), emulatorpin, dict.fromkeys(iothreads, "0-15"))
    return GuestState(
        domain_id=domain_id,
        name=f"vm{domain_id}",
        host_id=HOST_ID,
        state=state,
        vcpus_max=vcpus,
        vcpus_current=vcpus,
        placement=placement,
        iothread_ids=iothreads,
        live=live if live is not None else (current if state != "shutoff" else None),
        config=config if config is not None else current,
    )


def plan(
    profile: dict[str, Any],
    targets: list[GuestState],
    others: Sequence[GuestState] = (),
    *,
    host: HostLayout | None = None,
    scope: str = "live",
) -> list[GuestPlan]:
    layout = host or make_host()
    return plan_change(
        validate_profile(profile), targets, {HOST_ID: layout}, {HOST_ID: [*others, *targets]}, scope=scope
    )


def codes(issues: tuple[Issue, ...]) -> list[str]:
    return [issue.code for issue in issues]


def issue(issues: tuple[Issue, ...], code: str) -> Issue:
    return next(i for i in issues if i.code == code)


def vcpu_cpus(guest_plan: GuestPlan) -> list[int]:
    return [int(pin) for _, pin in sorted(guest_plan.desired["vcpupin"].items(), key=lambda kv: int(kv[0]))]


DEDICATED = {"vcpupin": {"strategy": "dedicated"}}


def refusal(content: Any) -> dict[str, list[str]]:
    with pytest.raises(ProfileError) as caught:
        validate_profile(content)
    return caught.value.errors


# validate_profile: structure


def test_an_empty_profile_is_refused_because_it_changes_nothing() -> None:
    assert "changes nothing" in refusal({})["profile"][0]


def test_a_profile_that_only_allows_a_shared_emulator_changes_nothing() -> None:
    assert "changes nothing" in refusal({"allow_shared_emulator": True})["profile"][0]


def test_a_profile_setting_one_aspect_is_accepted() -> None:
    assert validate_profile({"sched": {"cpu_shares": 1024}}).sched == {"cpu_shares": 1024}


def test_a_profile_that_is_not_an_object_is_refused() -> None:
    assert "JSON object" in refusal(["vcpupin"])["profile"][0]


def test_an_unknown_top_level_key_is_refused_by_name() -> None:
    errors = refusal({"vcpupins": {"strategy": "dedicated"}})
    assert "'vcpupins' is not a profile field" in errors["vcpupins"][0]


def test_an_unknown_vcpupin_strategy_is_refused_naming_it() -> None:
    errors = refusal({"vcpupin": {"strategy": "spread"}})
    assert "vcpupin.strategy 'spread' is unknown" in errors["vcpupin.strategy"][0]


@pytest.mark.parametrize("strategy", ["dedicated", "pool"])
def test_every_known_vcpupin_strategy_without_cpus_is_accepted(strategy: str) -> None:
    assert validate_profile({"vcpupin": {"strategy": strategy}}).vcpupin == {"strategy": strategy}


def test_a_missing_strategy_is_refused() -> None:
    assert "missing" in refusal({"emulatorpin": {"cpus": "0"}})["emulatorpin.strategy"][0]


def test_an_emulatorpin_strategy_meant_for_vcpus_is_refused() -> None:
    assert "'dedicated' is unknown" in refusal({"emulatorpin": {"strategy": "dedicated"}})["emulatorpin.strategy"][0]


def test_cpus_given_to_the_dedicated_strategy_are_refused() -> None:
    errors = refusal({"vcpupin": {"strategy": "dedicated", "cpus": "2-5"}})
    assert "not used by the 'dedicated' strategy" in errors["vcpupin.cpus"][0]


def test_pool_cpus_are_normalised_to_canonical_cpulist_form() -> None:
    spec = validate_profile({"vcpupin": {"strategy": "pool", "cpus": "7,2-6,^4"}})
    assert spec.vcpupin == {"strategy": "pool", "cpus": "2-3,5-7"}


def test_a_bad_explicit_cpulist_is_refused_under_its_vcpu_naming_the_token() -> None:
    errors = refusal({"vcpupin": {"strategy": "explicit", "cpus": {"0": "2", "1": "4-3"}}})
    assert list(errors) == ["vcpupin.cpus.1"]
    assert "'4-3'" in errors["vcpupin.cpus.1"][0]
    assert "reversed range" in errors["vcpupin.cpus.1"][0]


def test_explicit_pins_are_normalised_and_sorted_by_vcpu() -> None:
    spec = validate_profile({"vcpupin": {"strategy": "explicit", "cpus": {"10": "4,3", "02": "5"}}})
    assert spec.vcpupin == {"strategy": "explicit", "cpus": {"2": "5", "10": "3-4"}}


def test_an_explicit_vcpu_that_is_not_a_number_is_refused() -> None:
    errors = refusal({"vcpupin": {"strategy": "explicit", "cpus": {"first": "2"}}})
    assert "'first' is not a vCPU number" in errors["vcpupin.cpus.first"][0]


def test_the_same_vcpu_spelt_twice_is_refused() -> None:
    errors = refusal({"vcpupin": {"strategy": "explicit", "cpus": {"1": "2", "01": "3"}}})
    assert "listed more than once" in errors["vcpupin.cpus.01"][0]


def test_explicit_pins_without_any_vcpu_are_refused() -> None:
    assert "vcpupin.cpus is {}" in refusal({"vcpupin": {"strategy": "explicit", "cpus": {}}})["vcpupin.cpus"][0]


def test_the_cpulist_strategy_needs_cpus() -> None:
    assert "missing" in refusal({"iothreadpin": {"strategy": "cpulist"}})["iothreadpin.cpus"][0]


def test_a_cpulist_that_is_not_a_string_is_refused() -> None:
    assert "is 3;" in refusal({"emulatorpin": {"strategy": "cpulist", "cpus": 3}})["emulatorpin.cpus"][0]


def test_allow_shared_emulator_must_be_a_boolean() -> None:
    errors = refusal({"emulatorpin": {"strategy": "isolate"}, "allow_shared_emulator": "yes"})
    assert "'yes'" in errors["allow_shared_emulator"][0]


def test_every_problem_is_reported_at_once() -> None:
    errors = refusal({"vcpupin": {"strategy": "x"}, "sched": {"vcpu_quota": 5}, "color": "red"})
    assert set(errors) == {"vcpupin.strategy", "sched.vcpu_quota", "color"}


def test_the_spec_keeps_a_copy_of_the_normalised_content() -> None:
    spec = validate_profile({"emulatorpin": {"strategy": "cpulist", "cpus": "1,0"}, "allow_shared_emulator": True})
    content = spec.as_json()
    assert content == {"emulatorpin": {"strategy": "cpulist", "cpus": "0-1"}, "allow_shared_emulator": True}
    content["emulatorpin"]["cpus"] = "9"
    assert spec.emulatorpin == {"strategy": "cpulist", "cpus": "0-1"}


# validate_profile: scheduler ranges


@pytest.mark.parametrize(
    ("name", "bad", "good"),
    [
        ("cpu_shares", 1, 2),
        ("cpu_shares", 262145, 262144),
        ("vcpu_period", 999, 1000),
        ("emulator_period", 1000001, 1000000),
        ("global_period", 999, 1000),
        ("iothread_period", 1000001, 1000000),
        ("vcpu_quota", 999, 1000),
        ("emulator_quota", 17592186044416, 17592186044415),
        ("global_quota", 999, 1000),
        ("iothread_quota", 999, 1000),
    ],
)
def test_scheduler_values_outside_libvirts_range_are_refused(name: str, bad: int, good: int) -> None:
    message = refusal({"sched": {name: bad}})[f"sched.{name}"][0]
    assert f"sched.{name} is {bad}" in message
    assert validate_profile({"sched": {name: good}}).sched == {name: good}


@pytest.mark.parametrize("name", ["vcpu_quota", "emulator_quota", "global_quota", "iothread_quota"])
def test_a_negative_quota_means_unlimited_and_is_stored_as_minus_one(name: str) -> None:
    assert validate_profile({"sched": {name: -5}}).sched == {name: -1}


@pytest.mark.parametrize("name", ["cpu_shares", "vcpu_period", "vcpu_quota"])
def test_zero_is_refused_with_advice_to_omit_the_key(name: str) -> None:
    message = refusal({"sched": {name: 0}})[f"sched.{name}"][0]
    assert "leave unset" in message
    assert f"omit {name}" in message


@pytest.mark.parametrize("value", [True, 20000.0, "20000", None])
def test_a_scheduler_value_that_is_not_an_integer_is_refused(value: Any) -> None:
    assert repr(value) in refusal({"sched": {"vcpu_quota": value}})["sched.vcpu_quota"][0]


def test_an_unknown_scheduler_parameter_is_refused() -> None:
    assert "not a scheduler parameter" in refusal({"sched": {"vcpu_shares": 2}})["sched.vcpu_shares"][0]


def test_a_global_cap_tighter_than_the_vcpu_cap_is_refused_for_cgroup_v1() -> None:
    errors = refusal({"sched": {"global_period": 100000, "global_quota": 50000, "vcpu_quota": 60000}})
    assert "vcpu_quota 60000" in errors["sched.global_quota"][0]


def test_a_global_cap_as_loose_as_the_vcpu_cap_is_accepted() -> None:
    sched = {"global_period": 100000, "global_quota": 60000, "vcpu_quota": 60000}
    assert validate_profile({"sched": sched}).sched == sched


def test_a_global_cap_tighter_than_the_emulator_cap_is_refused_using_the_emulator_period() -> None:
    sched = {"global_period": 200000, "global_quota": 20000, "emulator_period": 100000, "emulator_quota": 20000}
    assert "emulator_quota 20000" in refusal({"sched": sched})["sched.global_quota"][0]
    sched["emulator_period"] = 200000
    assert validate_profile({"sched": sched}).sched["emulator_quota"] == 20000


def test_the_global_ratio_is_not_checked_without_a_global_period() -> None:
    sched = {"global_quota": 1000, "vcpu_quota": 60000}
    assert validate_profile({"sched": sched}).sched == sched


# percent helpers


def test_percent_of_one_cpu_becomes_a_quota_in_the_period() -> None:
    assert percent_to_quota(20, 100000) == 20000
    assert percent_to_quota(12.5, 200000) == 25000


@pytest.mark.parametrize(("percent", "period"), [(0, 100000), (0.5, 100000), (20, 999), (-3, 100000)])
def test_percent_that_gives_no_valid_quota_is_refused(percent: float, period: int) -> None:
    with pytest.raises(ValueError):
        percent_to_quota(percent, period)


def test_a_quota_reads_back_as_percent_and_unlimited_has_none() -> None:
    assert quota_to_percent(20000, 100000) == 20.0
    assert quota_to_percent(50000, None) == 50.0
    assert quota_to_percent(-1, 100000) is None
    assert quota_to_percent(0, 100000) is None


json_leaf = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
profile_words = st.sampled_from(
    [*PROFILE_KEYS, *VCPUPIN_STRATEGIES, *THREADPIN_STRATEGIES, *SCHED_NAMES, "strategy", "cpus", "0", "1", "2-5"]
)
json_like = st.recursive(
    json_leaf | profile_words,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(profile_words | st.text(max_size=6), inner, max_size=5),
    max_leaves=25,
)


@settings(max_examples=400, deadline=None)
@given(json_like)
def test_validation_of_any_json_raises_nothing_but_profile_error(content: Any) -> None:
    try:
        spec = validate_profile(content)
    except ProfileError as exc:
        assert exc.errors
        assert all(messages for messages in exc.errors.values())
    else:
        assert isinstance(spec, ProfileSpec)
        assert validate_profile(spec.as_json()) == spec


# Host layout and holdings


def test_the_guest_pool_is_online_cpus_outside_housekeeping() -> None:
    host = make_host(offline=frozenset({15}))
    assert host.guest_pool == parse_cpulist("1-7,9-14")
    assert host.cells == {0: parse_cpulist("0-3,8-11"), 1: parse_cpulist("4-7,12-15")}
    assert 15 not in host.online


def test_a_thread_pinned_to_one_pool_cpu_holds_it_dedicated() -> None:
    guest = make_guest(7, pins={0: "3", 1: "4-5"}, emulatorpin="6", iothreads=(1,))
    assert dedicated_holders([guest], make_host()) == {3: {7}, 6: {7}}


def test_a_single_pin_on_a_housekeeping_cpu_holds_nothing() -> None:
    assert dedicated_holders([make_guest(7, pins={0: "0", 1: "8"})], make_host()) == {}


def test_a_shut_off_guest_holds_what_its_config_says_and_a_running_one_what_runs() -> None:
    stopped = make_guest(2, 1, state="shutoff", config=tuning({0: "5"}))
    running = make_guest(3, 1, live=tuning({0: "6"}), config=tuning({0: "7"}))
    assert dedicated_holders([stopped, running], make_host()) == {5: {2}, 6: {3}}


# vcpupin dedicated


def test_dedicated_vcpus_fill_one_cell_with_whole_cores_first() -> None:
    (result,) = plan(DEDICATED, [make_guest(1, 6)])
    assert result.ok
    # Cell 1 has the most free CPUs (8): its four cores first, then two hyperthread siblings.
    assert vcpu_cpus(result) == [4, 5, 6, 7, 12, 13]
    assert codes(result.warnings) == []


def test_dedicated_vcpus_go_to_the_lower_cell_when_cells_tie() -> None:
    holder = make_guest(9, 2, pins={0: "4", 1: "5"})
    (result,) = plan(DEDICATED, [make_guest(1, 2)], [holder])
    # Cell 1 now has 6 free CPUs, cell 0 has 6 too: the lower cell id wins the tie.
    assert vcpu_cpus(result) == [1, 2]


def test_dedicated_vcpus_never_take_a_held_cpu_and_avoid_its_sibling() -> None:
    holder = make_guest(9, 1, pins={0: "5"})
    (result,) = plan(DEDICATED, [make_guest(1, 4)], [holder])
    assert vcpu_cpus(result) == [4, 6, 7, 12]
    assert 5 not in vcpu_cpus(result)
    assert 13 not in vcpu_cpus(result)


def test_dedicated_vcpus_split_across_cells_only_when_no_cell_fits_and_say_so() -> None:
    (split,) = plan(DEDICATED, [make_guest(1, 10)])
    assert split.ok
    assert sorted(vcpu_cpus(split)) == [1, 2, 4, 5, 6, 7, 12, 13, 14, 15]
    assert codes(split.warnings) == ["numa_split"]
    (fits,) = plan(DEDICATED, [make_guest(1, 8)])
    assert codes(fits.warnings) == []


def test_more_dedicated_vcpus_than_free_cpus_is_refused_with_the_counts() -> None:
    holder = make_guest(9, 1, pins={0: "1"})
    (result,) = plan(DEDICATED, [make_guest(1, 14)], [holder])
    error = issue(result.errors, "not_enough_cpus")
    assert "needs 14" in error.message
    assert "only 13" in error.message
    assert error.field == "vcpupin"
    assert "vcpupin" not in result.desired
    (fits,) = plan(DEDICATED, [make_guest(1, 13)], [holder])
    assert fits.ok


def test_two_targets_on_one_host_get_different_cpus() -> None:
    first, second = plan(DEDICATED, [make_guest(1, 4), make_guest(2, 4)])
    assert vcpu_cpus(first) == [4, 5, 6, 7]
    assert vcpu_cpus(second) == [1, 2, 3, 9]
    assert not set(vcpu_cpus(first)) & set(vcpu_cpus(second))


def test_re_planning_a_guest_may_reuse_the_cpus_it_already_holds() -> None:
    holder = make_guest(9, 4, pins={0: "4", 1: "5", 2: "6", 3: "7"})
    target = make_guest(1, 2, pins={0: "2", 1: "3"})
    (result,) = plan(DEDICATED, [target], [holder])
    assert result.ok
    assert vcpu_cpus(result) == [1, 2]


def test_a_cpu_whose_sibling_is_dedicated_elsewhere_is_flagged() -> None:
    holder = make_guest(9, 7, pins={n: str(n + 1) for n in range(7)})
    (result,) = plan(DEDICATED, [make_guest(1, 1)], [holder])
    assert result.ok
    assert issue(result.warnings, "sibling_shared").field == "vcpupin 0"
    assert "vm9" in issue(result.warnings, "sibling_shared").message


def test_a_cpu_on_a_free_core_is_not_flagged() -> None:
    holder = make_guest(9, 1, pins={0: "1"})
    (result,) = plan(DEDICATED, [make_guest(1, 1)], [holder])
    assert "sibling_shared" not in codes(result.warnings)


@settings(max_examples=150, deadline=None)
@given(
    held=st.sets(st.sampled_from(sorted(make_host().guest_pool))),
    vcpu_counts=st.lists(st.integers(min_value=1, max_value=8), min_size=1, max_size=5),
)
def test_dedicated_plans_never_overlap_held_cpus_and_never_leave_the_pool(
    held: set[int], vcpu_counts: list[int]
) -> None:
    host = make_host()
    holder = make_guest(99, max(len(held), 1), pins={n: str(cpu) for n, cpu in enumerate(sorted(held))} or None)
    targets = [make_guest(i + 1, count) for i, count in enumerate(vcpu_counts)]
    plans = plan(DEDICATED, targets, [holder], host=host)
    taken: set[int] = set(held)
    for target, result in zip(targets, plans, strict=True):
        free = len(host.guest_pool - taken)
        if not result.ok:
            assert codes(result.errors) == ["not_enough_cpus"]
            assert target.vcpus_max > free
            continue
        cpus = vcpu_cpus(result)
        assert len(cpus) == len(set(cpus)) == target.vcpus_max
        assert set(cpus) <= host.guest_pool
        assert not set(cpus) & taken
        taken |= set(cpus)


# vcpupin pool and explicit


def test_pool_pins_every_vcpu_to_the_guest_pool() -> None:
    (result,) = plan({"vcpupin": {"strategy": "pool"}}, [make_guest(1, 3)])
    assert result.desired == {"vcpupin": {"0": "1-7,9-15", "1": "1-7,9-15", "2": "1-7,9-15"}}
    assert "numa_split" not in codes(result.warnings)  # a pool floats over both cells by choice


def test_explicit_pins_in_two_cells_are_flagged_as_split() -> None:
    (split,) = plan({"vcpupin": {"strategy": "explicit", "cpus": {"0": "2", "1": "5"}}}, [make_guest(1, 2)])
    assert split.ok
    assert issue(split.warnings, "numa_split").field == "vcpupin"
    (together,) = plan({"vcpupin": {"strategy": "explicit", "cpus": {"0": "2", "1": "3"}}}, [make_guest(1, 2)])
    assert codes(together.warnings) == []


def test_pool_with_cpus_pins_every_vcpu_to_them() -> None:
    (result,) = plan({"vcpupin": {"strategy": "pool", "cpus": "4-7"}}, [make_guest(1, 2)])
    assert result.desired == {"vcpupin": {"0": "4-7", "1": "4-7"}}
    assert codes(result.warnings) == []


def test_a_pool_cpu_the_host_does_not_have_is_refused() -> None:
    (result,) = plan({"vcpupin": {"strategy": "pool", "cpus": "4-20"}}, [make_guest(1, 2)])
    error = issue(result.errors, "cpu_absent")
    assert error.field == "vcpupin.cpus"
    assert "CPU 16-20" in error.message


def test_a_pool_over_cpus_dedicated_to_another_guest_is_flagged() -> None:
    holder = make_guest(9, 1, pins={0: "5"})
    (result,) = plan({"vcpupin": {"strategy": "pool", "cpus": "4-7"}}, [make_guest(1, 2)], [holder])
    assert result.ok
    assert "vm9" in issue(result.warnings, "shares_dedicated").message


def test_explicit_pins_set_only_the_listed_vcpus() -> None:
    profile = {"vcpupin": {"strategy": "explicit", "cpus": {"0": "2", "2": "3-4"}}}
    (result,) = plan(profile, [make_guest(1, 4)])
    assert result.ok
    assert result.desired == {"vcpupin": {"0": "2", "2": "3-4"}}


def test_an_explicit_vcpu_beyond_the_guests_vcpus_is_refused() -> None:
    profile = {"vcpupin": {"strategy": "explicit", "cpus": {"2": "3"}}}
    (result,) = plan(profile, [make_guest(1, 2)])
    error = issue(result.errors, "vcpu_out_of_range")
    assert error.field == "vcpupin.cpus.2"
    assert "no vCPU 2" in error.message
    (fits,) = plan(profile, [make_guest(1, 3)])
    assert fits.ok


def test_an_explicit_pin_to_an_offline_cpu_is_refused() -> None:
    profile = {"vcpupin": {"strategy": "explicit", "cpus": {"0": "3"}}}
    (result,) = plan(profile, [make_guest(1, 2)], host=make_host(offline=frozenset({3})))
    error = issue(result.errors, "cpu_offline")
    assert (error.field, "CPU 3" in error.message) == ("vcpupin.cpus.0", True)
    (online,) = plan(profile, [make_guest(1, 2)], host=make_host(offline=frozenset({4})))
    assert online.ok


def test_an_explicit_single_cpu_pin_on_a_cpu_held_by_another_guest_is_refused_naming_it() -> None:
    holder = make_guest(9, 1, pins={0: "3"})
    (result,) = plan({"vcpupin": {"strategy": "explicit", "cpus": {"1": "3"}}}, [make_guest(1, 2)], [holder])
    error = issue(result.errors, "cpu_held")
    assert error.field == "vcpupin.cpus.1"
    assert "vm9" in error.message


def test_an_explicit_multi_cpu_pin_over_a_held_cpu_only_warns() -> None:
    holder = make_guest(9, 1, pins={0: "3"})
    (result,) = plan({"vcpupin": {"strategy": "explicit", "cpus": {"1": "2-3"}}}, [make_guest(1, 2)], [holder])
    assert result.ok
    assert codes(result.warnings) == ["shares_dedicated"]


# emulatorpin and iothreadpin


def test_housekeeping_pins_the_emulator_to_the_hosts_partition() -> None:
    (result,) = plan({"emulatorpin": {"strategy": "housekeeping"}}, [make_guest(1)])
    assert result.desired == {"emulatorpin": "0,8"}


def test_housekeeping_on_a_host_without_a_partition_is_refused() -> None:
    (result,) = plan({"emulatorpin": {"strategy": "housekeeping"}}, [make_guest(1)], host=make_host(frozenset()))
    error = issue(result.errors, "no_housekeeping")
    assert error.field == "emulatorpin.strategy"
    assert "admin" in error.message


def test_isolate_gives_emulator_and_iothreads_their_own_cpus_away_from_the_vcpus() -> None:
    profile = {**DEDICATED, "emulatorpin": {"strategy": "isolate"}, "iothreadpin": {"strategy": "isolate"}}
    (result,) = plan(profile, [make_guest(1, 2, iothreads=(1, 2))])
    assert result.ok
    assert vcpu_cpus(result) == [4, 5]
    assert result.desired["emulatorpin"] == "6"
    assert result.desired["iothreadpin"] == {"1": "7", "2": "7"}


def test_an_isolated_emulator_cpu_counts_as_held_for_the_next_target() -> None:
    profile = {"emulatorpin": {"strategy": "isolate"}}
    first, second = plan(profile, [make_guest(1), make_guest(2)])
    assert first.desired["emulatorpin"] != second.desired["emulatorpin"]


def test_isolate_without_a_free_cpu_is_refused() -> None:
    holder = make_guest(9, 14, pins={n: str(cpu) for n, cpu in enumerate(sorted(make_host().guest_pool))})
    (result,) = plan({"emulatorpin": {"strategy": "isolate"}}, [make_guest(1)], [holder])
    assert issue(result.errors, "not_enough_cpus").field == "emulatorpin"


def test_an_emulator_on_the_guests_own_dedicated_vcpu_cpu_breaks_isolation() -> None:
    target = make_guest(1, 2, pins={0: "4", 1: "5"})
    (result,) = plan({"emulatorpin": {"strategy": "cpulist", "cpus": "5-6"}}, [target])
    error = issue(result.errors, "isolation_broken")
    assert error.field == "emulatorpin"
    assert "CPU 5" in error.message
    (apart,) = plan({"emulatorpin": {"strategy": "cpulist", "cpus": "6-7"}}, [target])
    assert apart.ok


def test_allow_shared_emulator_permits_the_guests_own_vcpu_cpus() -> None:
    target = make_guest(1, 2, pins={0: "4", 1: "5"})
    profile = {"emulatorpin": {"strategy": "cpulist", "cpus": "5"}, "allow_shared_emulator": True}
    (result,) = plan(profile, [target])
    assert result.ok
    assert result.desired == {"emulatorpin": "5"}


def test_iothreads_on_a_cpu_the_plan_dedicates_to_a_vcpu_break_isolation() -> None:
    profile = {
        "vcpupin": {"strategy": "explicit", "cpus": {"0": "4"}},
        "iothreadpin": {"strategy": "cpulist", "cpus": "4"},
    }
    (result,) = plan(profile, [make_guest(1, 2, iothreads=(1,))])
    assert issue(result.errors, "isolation_broken").field == "iothreadpin"
    profile["iothreadpin"] = {"strategy": "cpulist", "cpus": "5"}
    (apart,) = plan(profile, [make_guest(1, 2, iothreads=(1,))])
    assert apart.ok


def test_dedicated_vcpus_leave_the_cpus_named_for_the_emulator_alone() -> None:
    profile = {**DEDICATED, "emulatorpin": {"strategy": "cpulist", "cpus": "4"}}
    (result,) = plan(profile, [make_guest(1, 2)])
    assert result.ok
    assert vcpu_cpus(result) == [5, 6]
    assert result.desired["emulatorpin"] == "4"


def test_an_emulator_pinned_alone_to_a_cpu_held_by_another_guest_is_refused() -> None:
    holder = make_guest(9, 1, pins={0: "6"})
    (result,) = plan({"emulatorpin": {"strategy": "cpulist", "cpus": "6"}}, [make_guest(1)], [holder])
    assert issue(result.errors, "cpu_held").field == "emulatorpin.cpus"


def test_an_emulator_cpu_the_host_does_not_have_is_refused() -> None:
    (result,) = plan({"emulatorpin": {"strategy": "cpulist", "cpus": "31"}}, [make_guest(1)])
    assert issue(result.errors, "cpu_absent").field == "emulatorpin.cpus"


def test_pinning_the_emulator_of_a_numad_placed_guest_is_refused() -> None:
    profile = {"emulatorpin": {"strategy": "housekeeping"}}
    (result,) = plan(profile, [make_guest(1, placement="auto")])
    assert issue(result.errors, "placement_auto").field == "emulatorpin"
    (static,) = plan(profile, [make_guest(1, placement="static")])
    assert static.ok


def test_a_numad_placed_guest_may_still_get_vcpu_caps() -> None:
    (result,) = plan({"sched": {"vcpu_quota": 20000}}, [make_guest(1, placement="auto")])
    assert result.ok


def test_iothreadpin_on_a_guest_without_iothreads_only_warns() -> None:
    (result,) = plan({"iothreadpin": {"strategy": "housekeeping"}}, [make_guest(1)])
    assert result.ok
    assert codes(result.warnings) == ["no_iothreads"]
    assert result.desired == {}


def test_iothreadpin_pins_every_iothread_of_the_guest() -> None:
    (result,) = plan({"iothreadpin": {"strategy": "housekeeping"}}, [make_guest(1, iothreads=(1, 3))])
    assert codes(result.warnings) == []
    assert result.desired == {"iothreadpin": {"1": "0,8", "3": "0,8"}}


# Scope, scheduler and bookkeeping


@pytest.mark.parametrize("scope", ["live", "both"])
def test_a_live_change_on_a_shut_off_guest_is_refused_suggesting_config(scope: str) -> None:
    (result,) = plan({"sched": {"vcpu_quota": 20000}}, [make_guest(1, state="shutoff")], scope=scope)
    error = issue(result.errors, "guest_not_running")
    assert "'config'" in error.message


@pytest.mark.parametrize(("state", "scope"), [("shutoff", "config"), ("paused", "live"), ("running", "both")])
def test_a_change_the_guests_state_allows_is_accepted(state: str, scope: str) -> None:
    (result,) = plan({"sched": {"vcpu_quota": 20000}}, [make_guest(1, state=state)], scope=scope)
    assert result.ok


def test_an_unknown_scope_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="scope 'current'"):
        plan({"sched": {"vcpu_quota": 20000}}, [make_guest(1)], scope="current")


def test_shares_above_the_cgroup_v2_limit_only_warn() -> None:
    (high,) = plan({"sched": {"cpu_shares": 10001}}, [make_guest(1)])
    assert high.ok
    assert issue(high.warnings, "shares_cgroup_v2").field == "sched.cpu_shares"
    (within,) = plan({"sched": {"cpu_shares": 10000}}, [make_guest(1)])
    assert codes(within.warnings) == []


def test_a_plan_sets_only_what_the_profile_sets() -> None:
    (result,) = plan({"sched": {"vcpu_quota": 20000, "vcpu_period": 100000}}, [make_guest(1)])
    assert result.desired == {"sched": {"vcpu_period": 100000, "vcpu_quota": 20000}}


def test_a_target_on_an_unknown_host_is_refused() -> None:
    stray = GuestState(5, "stray", 42, "running", 1, 1, "static", (), None, None)
    (result,) = plan_change(validate_profile(DEDICATED), [stray], {HOST_ID: make_host()}, {}, "live")
    assert codes(result.errors) == ["host_unknown"]


def test_plans_keep_target_order() -> None:
    targets = [make_guest(3), make_guest(1), make_guest(2)]
    assert [p.domain_id for p in plan({"sched": {"cpu_shares": 512}}, targets)] == [3, 1, 2]


def test_diff_shows_current_and_desired_per_field() -> None:
    current = tuning({0: "0-15", 1: "5"}, "0-15")
    desired = {"vcpupin": {"0": "4", "1": "5"}, "emulatorpin": "0,8", "sched": {"vcpu_quota": 20000}}
    assert diff(current, desired) == [
        {"field": "vcpupin 0", "current": "0-15", "desired": "4", "changes": True},
        {"field": "vcpupin 1", "current": "5", "desired": "5", "changes": False},
        {"field": "emulatorpin", "current": "0-15", "desired": "0,8", "changes": True},
        {"field": "vcpu_quota", "current": -1, "desired": 20000, "changes": True},
    ]


def test_diff_against_no_current_tuning_changes_everything() -> None:
    rows = diff(None, {"iothreadpin": {"1": "0"}})
    assert rows == [{"field": "iothreadpin 1", "current": None, "desired": "0", "changes": True}]


def test_a_vcpu_cap_above_the_guests_existing_global_cap_is_refused_at_planning() -> None:
    capped = tuning()
    capped["sched"] = {**capped["sched"], "global_period": 100000, "global_quota": 10000}
    guest = make_guest(1, live=capped)
    refused = plan({"sched": {"vcpu_period": 100000, "vcpu_quota": 50000}}, [guest])[0]
    assert codes(refused.errors) == ["cgroup_v1_ratio"]
    assert "current live caps" in refused.errors[0].message
    within = plan({"sched": {"vcpu_period": 100000, "vcpu_quota": 5000}}, [guest])[0]
    assert within.ok


def test_a_cpu_claimed_by_two_guests_stays_held_whichever_of_them_is_planned() -> None:
    first = make_guest(1, 1, pins={0: "3"})
    second = make_guest(2, 1, pins={0: "3"})
    for target, other in ((first, second), (second, first)):
        result = plan({"vcpupin": {"strategy": "explicit", "cpus": {"0": "3"}}}, [target], [other])[0]
        assert codes(result.errors) == ["cpu_held"]
