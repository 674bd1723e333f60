"""A guest's desired state: what the change requests still in force say each managed field should be.

The merge is pure; the service reads the requests' guests from the database (rows made here: the engine
that writes them is exercised against the real fleet in tests/test_safe_rollback.py, which checks the
stored state after real applies and rollbacks)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from hosts.desired import later_writes, merge_desired, refresh_desired_state
from hosts.models import ChangeRequest, ChangeTarget, Domain, Host, PinProfile, PinProfileRevision


def test_later_requests_win_field_by_field_in_the_scopes_they_wrote() -> None:
    state = merge_desired(
        [
            ("both", {"vcpupin": {"0": "2", "1": "3"}, "sched": {"vcpu_quota": 50000}}),
            ("live", {"vcpupin": {"1": "4"}, "emulatorpin": "0"}),
            ("config", {"sched": {"vcpu_quota": 20000, "cpu_shares": 512}, "iothreadpin": {"1": "0"}}),
        ]
    )
    assert state == {
        "live": {"vcpupin": {"0": "2", "1": "4"}, "sched": {"vcpu_quota": 50000}, "emulatorpin": "0"},
        "config": {
            "vcpupin": {"0": "2", "1": "3"},
            "sched": {"vcpu_quota": 20000, "cpu_shares": 512},
            "iothreadpin": {"1": "0"},
        },
    }


def test_no_request_in_force_means_nothing_is_managed() -> None:
    assert merge_desired([]) == {"live": {}, "config": {}}


@pytest.fixture
def guest(db: None) -> Domain:
    host = Host.objects.create(name="kvm-d", uri="qemu+tcp://127.0.0.1:1/system", transport=Host.Transport.TCP)
    return Domain.objects.create(host=host, uuid=uuid.uuid4(), name="g1", state=Domain.State.RUNNING)


def _applied(
    guest: Domain, user: User, scope: str, desired: dict, minutes: int, status: str = "applied"
) -> ChangeTarget:
    profile = PinProfile.objects.create(name=f"p{PinProfile.objects.count()}")
    revision = PinProfileRevision.objects.create(profile=profile, number=1, content={})
    cr = ChangeRequest.objects.create(
        profile_revision=revision, scope=scope, reason="r", requested_by=user, status=ChangeRequest.Status.APPLIED
    )
    return ChangeTarget.objects.create(
        change_request=cr,
        host=guest.host,
        domain=guest,
        domain_uuid=guest.uuid,
        domain_name=guest.name,
        desired=desired,
        status=status,
        started_at=timezone.now() - timedelta(minutes=60 - minutes),
    )


@pytest.mark.django_db
def test_a_rolled_back_request_falls_back_to_the_earlier_value_or_to_unmanaged(guest: Domain, operator: User) -> None:
    first = _applied(guest, operator, "live", {"sched": {"vcpu_quota": 50000}}, minutes=1)
    second = _applied(guest, operator, "both", {"sched": {"vcpu_quota": 30000, "cpu_shares": 512}}, minutes=2)
    _applied(guest, operator, "live", {"emulatorpin": "0"}, minutes=3, status=ChangeTarget.Status.FAILED)
    refresh_desired_state([guest.pk])
    guest.refresh_from_db()
    assert guest.desired_state == {
        "live": {"sched": {"vcpu_quota": 30000, "cpu_shares": 512}},
        "config": {"sched": {"vcpu_quota": 30000, "cpu_shares": 512}},
    }
    assert later_writes([first])[first.pk] == {
        ("live", "vcpu_quota"): (second.change_request_id, 30000),
        ("live", "cpu_shares"): (second.change_request_id, 512),
        ("config", "vcpu_quota"): (second.change_request_id, 30000),
        ("config", "cpu_shares"): (second.change_request_id, 512),
    }

    ChangeTarget.objects.filter(pk=second.pk).update(status=ChangeTarget.Status.ROLLED_BACK)
    refresh_desired_state([guest.pk])
    guest.refresh_from_db()
    assert guest.desired_state == {"live": {"sched": {"vcpu_quota": 50000}}, "config": {}}

    ChangeTarget.objects.filter(pk=first.pk).update(status=ChangeTarget.Status.ROLLED_BACK)
    refresh_desired_state([guest.pk, None])
    guest.refresh_from_db()
    assert guest.desired_state == {"live": {}, "config": {}}


@pytest.mark.django_db
def test_requests_count_in_the_order_their_guests_were_written(guest: Domain, operator: User) -> None:
    # Created first but written last (its apply waited for its time): it wins.
    late = _applied(guest, operator, "live", {"vcpupin": {"0": "3"}}, minutes=5)
    _applied(guest, operator, "live", {"vcpupin": {"0": "2"}}, minutes=4)
    refresh_desired_state([guest.pk])
    guest.refresh_from_db()
    assert guest.desired_state["live"] == {"vcpupin": {"0": "3"}}
    assert later_writes([late])[late.pk] == {}


@pytest.mark.django_db
def test_the_migration_fills_the_desired_state_of_guests_changed_before_it_existed(
    guest: Domain, operator: User
) -> None:
    """Migration 0010's backfill: a database from before desired state had guests with applied requests."""
    from importlib import import_module

    from django.apps import apps

    backfill = import_module("hosts.migrations.0010_backfill_desired_state_drop_plain_tokens").backfill_desired_state
    _applied(guest, operator, "both", {"sched": {"vcpu_quota": 50000}}, minutes=1)
    _applied(guest, operator, "live", {"vcpupin": {"0": "2"}}, minutes=2)
    _applied(guest, operator, "live", {"emulatorpin": "0"}, minutes=3, status=ChangeTarget.Status.ROLLED_BACK)
    Domain.objects.filter(pk=guest.pk).update(desired_state={})
    backfill(apps, None)
    guest.refresh_from_db()
    assert guest.desired_state == {
        "live": {"sched": {"vcpu_quota": 50000}, "vcpupin": {"0": "2"}},
        "config": {"sched": {"vcpu_quota": 50000}},
    }
