"""Comparing a guest's desired state with what libvirt and the kernel report (pure: no libvirt, no database)."""

from __future__ import annotations

from dataclasses import replace

from hosts.drift.compare import DEDICATED, Finding, compare_guest, compared_scopes, unplaced_vcpus
from hosts.libvirt.facts import DomainFacts, Tuning

SCHED = {"cpu_shares": 1024, "vcpu_period": 100000, "vcpu_quota": -1, "emulator_period": 100000}


def _tuning(**overrides: object) -> Tuning:
    values: dict[str, object] = {
        "vcpupin": {0: "2", 1: "3"},
        "emulatorpin": "0-1",
        "iothreadpin": {1: "0-1"},
        "sched": dict(SCHED),
    }
    values.update(overrides)
    return Tuning(**values)  # type: ignore[arg-type]


def _guest(
    live: Tuning | None = None, config: Tuning | None = None, affinity: dict[int, str] | None = None
) -> DomainFacts:
    return DomainFacts(
        uuid="00000000-0000-0000-0000-000000000001",
        name="g",
        state="running" if live is not None else "shutoff",
        persistent=True,
        vcpus_current=2,
        vcpus_max=2,
        placement="static",
        iothread_ids=(1,),
        live=live,
        config=config,
        affinity={0: "2", 1: "3"} if affinity is None and live is not None else affinity,
    )


DESIRED = {
    "live": {"vcpupin": {"0": "2", "1": "3"}, "emulatorpin": "0,1", "sched": {"vcpu_quota": 50000}},
    "config": {"vcpupin": {"0": "2", "1": "3"}, "sched": {"vcpu_quota": 50000}},
}


def test_a_guest_holding_its_desired_state_has_no_drift_and_cpulists_compare_by_meaning() -> None:
    capped = {**SCHED, "vcpu_quota": 50000}
    facts = _guest(live=_tuning(sched=capped), config=_tuning(sched={**capped, "cpu_shares": 0}))
    assert compare_guest(DESIRED, facts) == []


def test_a_live_pin_changed_through_libvirt_is_drift_of_that_vcpu() -> None:
    capped = {**SCHED, "vcpu_quota": 50000}
    facts = _guest(live=_tuning(vcpupin={0: "2", 1: "0-3"}, sched=capped), affinity={0: "2", 1: "0-3"})
    assert compare_guest(DESIRED, facts) == [Finding("live", "vcpupin 1", "3", "0-3")]


def test_a_thread_moved_behind_libvirts_back_is_drift_observed_as_its_real_affinity() -> None:
    """What ``taskset -pc`` does: libvirt's pin is unchanged, the kernel's affinity is not."""
    capped = {**SCHED, "vcpu_quota": 50000}
    facts = _guest(live=_tuning(sched=capped), affinity={0: "0", 1: "3"})
    assert compare_guest(DESIRED, facts) == [Finding("live", "vcpupin 0", "2", "0")]


def test_live_scheduler_values_and_config_values_are_compared_each_in_their_scope() -> None:
    facts = _guest(live=_tuning(sched={**SCHED, "vcpu_quota": 20000}), config=_tuning(sched={**SCHED, "vcpu_quota": 0}))
    assert compare_guest(DESIRED, facts) == [
        Finding("live", "vcpu_quota", 50000, 20000),
        Finding("config", "vcpu_quota", 50000, 0),
    ]


def test_every_spelling_of_an_unlimited_quota_is_the_same_value() -> None:
    desired = {"live": {"sched": {"vcpu_quota": -1}}}
    assert compare_guest(desired, _guest(live=_tuning(sched={"vcpu_quota": 17592186044415}))) == []
    assert compare_guest(desired, _guest(live=_tuning(sched={"vcpu_quota": 1000}))) == [
        Finding("live", "vcpu_quota", -1, 1000)
    ]


def test_unmanaged_fields_never_drift_and_a_stopped_guest_is_judged_on_its_config_only() -> None:
    wild = _tuning(vcpupin={0: "0", 1: "0"}, emulatorpin="3", sched={"cpu_shares": 5})
    assert compare_guest({}, _guest(live=wild, config=wild)) == []
    assert compare_guest({"live": {"sched": {"vcpu_quota": 50000}}}, _guest(config=wild)) == []
    stopped = _guest(config=_tuning(sched={"vcpu_quota": 50000}))
    assert compared_scopes(stopped) == {"config"}
    assert compare_guest(DESIRED, stopped) == []


def test_emulator_and_iothread_pins_are_compared() -> None:
    desired = {"live": {"emulatorpin": "0", "iothreadpin": {"1": "1"}}}
    assert compare_guest(desired, _guest(live=_tuning())) == [
        Finding("live", "emulatorpin", "0", "0-1"),
        Finding("live", "iothreadpin 1", "1", "0-1"),
    ]


def test_a_hot_added_vcpu_that_no_request_placed_is_reported_with_its_real_affinity() -> None:
    desired = {"live": {"vcpupin": {"0": "2"}}}
    facts = replace(_guest(live=_tuning(vcpupin={0: "2", 1: "0-3"})), affinity={0: "2", 1: "0-3"})
    assert compare_guest(desired, facts) == []
    assert unplaced_vcpus(desired, facts) == [Finding("live", "vcpupin 1", DEDICATED, "0-3")]
    assert unplaced_vcpus({"live": {"sched": {"vcpu_quota": 1000}}}, facts) == []  # vCPUs never placed
