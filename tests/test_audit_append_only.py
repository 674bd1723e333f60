"""The audit table refuses UPDATE and DELETE in the database itself, past the ORM's default manager.

Only what ``on_delete=SET_NULL`` needs stays allowed: clearing the reference to a deleted host, guest, profile,
change request or user, every other column left as it was.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import DatabaseError, connection, transaction

from hosts.inventory import create_host
from hosts.models import AuditEvent, Domain, Host

pytestmark = pytest.mark.django_db


def snapshot() -> list[tuple[Any, ...]]:
    """Every audit row as the database holds it, read with raw SQL (nothing the ORM could hide)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id, created_at, actor_id, action, host_id, domain_id, change_request_id, profile_id, object_repr,"
            ' "before", "after", message FROM hosts_auditevent ORDER BY id'
        )
        return list(cursor.fetchall())


def refused(attempt: Any) -> None:
    """``attempt`` raises a database error (in a savepoint, so the test's transaction goes on) and changes nothing."""
    before = snapshot()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        attempt()
    assert snapshot() == before


@pytest.fixture
def event(admin_user: User) -> AuditEvent:
    host = create_host(name="audithost", uri="qemu+tcp://127.0.0.1:16999/system", actor=admin_user)
    domain = Domain.objects.create(host=host, uuid=uuid.uuid4(), name="auditguest", state=Domain.State.RUNNING)
    return AuditEvent.objects.create(
        action=AuditEvent.Action.CHANGE_APPLIED,
        actor=admin_user,
        host=host,
        domain=domain,
        object_repr=domain.name,
        before={"vcpupin": {"0": "0-1"}},
        after={"vcpupin": {"0": "1"}},
        message="cap20 applied",
    )


def raw(sql: str, *params: Any) -> Any:
    def run() -> None:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)

    return run


def test_the_base_manager_cannot_update_or_delete(event: AuditEvent) -> None:
    rows = AuditEvent._base_manager.filter(pk=event.pk)
    refused(lambda: rows.update(message="rewritten"))
    refused(lambda: rows.update(action=AuditEvent.Action.CHANGE_FAILED))
    refused(lambda: rows.update(after=None))
    refused(lambda: AuditEvent._base_manager.all().update(message=""))
    refused(lambda: rows.delete())
    refused(lambda: AuditEvent._base_manager.all().delete())
    refused(lambda: AuditEvent._base_manager.filter(pk=event.pk)._raw_delete(connection.alias))


def test_raw_sql_cannot_update_or_delete(event: AuditEvent) -> None:
    refused(raw("UPDATE hosts_auditevent SET message = %s WHERE id = %s", "rewritten", event.pk))
    refused(raw("UPDATE hosts_auditevent SET object_repr = 'x'"))
    refused(raw("UPDATE hosts_auditevent SET created_at = created_at, message = 'x'"))
    refused(raw("DELETE FROM hosts_auditevent WHERE id = %s", event.pk))
    refused(raw("DELETE FROM hosts_auditevent"))


def test_a_reference_may_be_cleared_but_not_moved_or_cleared_with_other_changes(event: AuditEvent) -> None:
    other = create_host(name="otherhost", uri="qemu+tcp://127.0.0.1:16998/system", actor=None)
    rows = AuditEvent._base_manager.filter(pk=event.pk)
    refused(lambda: rows.update(host=other))  # pointing the record at another host
    refused(lambda: rows.update(domain=None, message="forged"))
    refused(raw("UPDATE hosts_auditevent SET actor_id = NULL, action = 'host.create' WHERE id = %s", event.pk))
    assert rows.update(profile=None) == 1  # already empty: nothing changes, allowed


def test_deleting_a_guest_host_or_user_keeps_their_audit_events(event: AuditEvent, admin_user: User) -> None:
    """Inventory sync deletes vanished guests; their history stays, only the reference is cleared."""
    before = {row[0]: row for row in snapshot()}
    count = len(before)
    Domain.objects.filter(pk=event.domain_id).delete()
    after = {row[0]: row for row in snapshot()}
    assert len(after) == count
    assert after[event.pk][5] is None  # domain_id
    assert after[event.pk][:5] == before[event.pk][:5] and after[event.pk][6:] == before[event.pk][6:]

    Host.objects.filter(pk=event.host_id).delete()
    admin_user.delete()
    rows = snapshot()
    assert len(rows) == count
    kept = {row[0]: row for row in rows}[event.pk]
    assert (kept[2], kept[4], kept[5]) == (None, None, None)  # actor, host, domain cleared
    assert kept[3] == AuditEvent.Action.CHANGE_APPLIED and kept[8] == "auditguest" and kept[11] == "cap20 applied"
    assert AuditEvent.objects.get(pk=event.pk).after == {"vcpupin": {"0": "1"}}


def test_new_events_are_still_written(event: AuditEvent) -> None:
    count = len(snapshot())
    AuditEvent.objects.create(action=AuditEvent.Action.HOST_UP, object_repr="audithost")
    assert len(snapshot()) == count + 1
