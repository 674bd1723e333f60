"""A host's lifecycle on the real fleet: an admin edits its name and URI, puts it in maintenance and back, and
removes it; every step is audited, and bad input changes nothing.

A host in maintenance is not contacted: a listener standing in for it counts every TCP connection, and the
real Celery worker's syncs (periodic and asked for) make none. Change requests touching it are refused, naming
it and the reason, when made and when their apply starts. A removed host's guests leave the inventory while its
change requests and audit events stay readable.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from django.contrib.auth.models import User
from django.test import Client

from hosts import tasks
from hosts.changes.requests import approve_change_request, create_change_request
from hosts.changes.start import start_change_request
from hosts.drift.watch import DriftWatcher
from hosts.harness.fleet import Fleet
from hosts.host_lifecycle import start_maintenance
from hosts.inventory import create_host, hosts_due_for_sync
from hosts.live.collector import Collector
from hosts.models import ApplyJob, AuditEvent, ChangeRequest, ChangeTarget, Domain, Host
from hosts.planning.profiles import create_profile
from tests.conftest import virsh, wait_for

pytestmark = [pytest.mark.fleet]

CONTENT = {"sched": {"vcpu_period": 100000, "vcpu_quota": 50000}}


class CountingListener:
    """A TCP port that accepts connections, counts them and hangs up: a host URI whose every contact shows."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _addr = self.sock.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[CountingListener]:
    counting = CountingListener()
    yield counting
    counting.close()


def _web_guest(fleet: Fleet, index: int) -> Domain:
    return Domain.objects.get(name=f"{fleet.prefix}{index}-web")


def _pending_request(operator: User, domains: list[Domain], name: str = "cap") -> ChangeRequest:
    profile = create_profile(name=name, description="", content=CONTENT, actor=operator)
    return create_change_request(
        revision=profile.revisions.get(), domain_ids=[d.pk for d in domains], scope="live", reason="cap", actor=operator
    )


@pytest.mark.django_db(transaction=True)
def test_a_host_in_maintenance_is_not_contacted_by_syncs_until_it_is_back(
    celery_worker: subprocess.Popen[bytes],
    listener: CountingListener,
    admin_user: User,
    login: Callable[[User], Client],
) -> None:
    admin = login(admin_user)
    host = create_host(name="counted", uri=f"qemu+tcp://127.0.0.1:{listener.port}/system", actor=None)
    # A second host in service witnesses that the worker did run the syncs (results are not kept).
    witness = CountingListener()
    create_host(name="witness", uri=f"qemu+tcp://127.0.0.1:{witness.port}/system", actor=None)
    tasks.sync_host.delay(host.pk)  # the listener really is contacted by a sync
    wait_for(lambda: listener.accepted >= 1, 30, what="the first sync to reach the listener")

    answer = admin.post(f"/api/hosts/{host.pk}/maintenance/", {"reason": "BIOS update"}, "application/json")
    assert answer.status_code == 200, answer.content
    assert answer.json()["maintenance_reason"] == "BIOS update"
    host.refresh_from_db()
    synced_at, contacts = host.last_sync_at, listener.accepted

    assert host.pk not in hosts_due_for_sync()
    try:
        tasks.sync_all_hosts.delay()  # beat's periodic task, run by the real worker
        wait_for(lambda: witness.accepted >= 1, 30, what="the periodic sync to reach the witness")
        tasks.sync_host.delay(host.pk)  # a sync asked for by id, then one of the witness after it
        tasks.sync_host.delay(Host.objects.get(name="witness").pk)
        wait_for(lambda: witness.accepted >= 2, 30, what="the witness's own sync")
        time.sleep(2)  # the tasks ran side by side; give the first one ample time to have contacted its host
    finally:
        witness.close()
    host.refresh_from_db()
    assert (listener.accepted, host.last_sync_at) == (contacts, synced_at)  # the worker's syncs left it alone
    assert tasks.sync_host(host.pk) == {"host_id": host.pk, "ok": False, "error": "host in maintenance"}
    refused = admin.post(f"/api/hosts/{host.pk}/sync/")
    assert refused.status_code == 409 and "BIOS update" in refused.json()["detail"]
    page = admin.post(f"/hosts/{host.pk}/sync/", follow=True)
    assert "is in maintenance (BIOS update): it is not synced" in page.content.decode()
    host.refresh_from_db()
    assert (listener.accepted, host.last_sync_at) == (contacts, synced_at)

    detail = admin.get(f"/hosts/{host.pk}/").content.decode()
    assert 'data-flag="maintenance"' in detail and "BIOS update" in detail
    assert 'data-flag="maintenance"' in admin.get("/").content.decode()  # the host list shows it too

    assert admin.post(f"/api/hosts/{host.pk}/resume/").status_code == 200
    wait_for(lambda: listener.accepted > contacts, 30, what="the sync queued on resume to reach the listener")
    host.refresh_from_db()
    assert host.maintenance_since is None and host.pk in hosts_due_for_sync()
    actions = list(AuditEvent.objects.filter(host=host).order_by("pk").values_list("action", "actor__username"))
    assert ("host.maintenance", "adam") in actions and ("host.resume", "adam") in actions


@pytest.mark.django_db
def test_the_collector_leaves_a_host_in_maintenance_alone(fleet_hosts: list[Host], admin_user: User) -> None:
    paused = start_maintenance(fleet_hosts[0].pk, reason="kernel upgrade", actor=admin_user)
    collector = Collector(interval=60, background_interval=60)
    try:
        collector.sync_hosts()
        assert set(collector._threads) == {h.pk for h in fleet_hosts[1:]}
        assert paused.pk not in collector._threads
    finally:
        for _thread, stop in collector._threads.values():
            stop.set()
        for thread, _stop in collector._threads.values():
            thread.join(timeout=10)


@pytest.mark.django_db
def test_the_drift_watcher_leaves_a_host_in_maintenance_alone(fleet_hosts: list[Host], admin_user: User) -> None:
    paused = start_maintenance(fleet_hosts[1].pk, reason="firmware", actor=admin_user)
    watcher = DriftWatcher()
    try:
        watcher.refresh()
        assert set(watcher.watchers) == {h.pk for h in fleet_hosts if h.pk != paused.pk}
    finally:
        for host_watcher in watcher.watchers.values():
            host_watcher.stop()
        for host_watcher in watcher.watchers.values():  # a round ends within seconds; none may outlive the test
            host_watcher.join(timeout=60)
        assert not any(w.is_alive() for w in watcher.watchers.values())


@pytest.mark.django_db(transaction=True)
def test_change_requests_touching_a_host_in_maintenance_are_refused_naming_it(
    fleet: Fleet,
    fleet_hosts: list[Host],
    celery_worker: subprocess.Popen[bytes],
    operator: User,
    approver: User,
    admin_user: User,
    login: Callable[[User], Client],
) -> None:
    op, ap, admin = login(operator), login(approver), login(admin_user)
    guest1, guest2 = _web_guest(fleet, 1), _web_guest(fleet, 2)
    host1 = guest1.host
    # Made before the maintenance: refused when its apply starts.
    earlier = _pending_request(operator, [guest1, guest2])
    quota_before = virsh(host1.uri, "schedinfo", guest1.name, "--live")

    page = admin.post(f"/hosts/{host1.pk}/maintenance/", {"reason": "RAM replacement"})
    assert page.status_code == 302
    profile = op.get("/api/profiles/").json()["results"][0]["id"]
    made = op.post(
        "/api/change-requests/",
        {"profile": profile, "domains": [guest1.pk], "scope": "live", "reason": "cap"},
        content_type="application/json",
    )
    assert made.status_code == 400, made.content
    message = str(made.json())
    assert host1.name in message and "RAM replacement" in message and "maintenance" in message
    assert ChangeRequest.objects.count() == 1

    assert ap.post(f"/api/change-requests/{earlier.pk}/approve/").status_code == 200
    wait_for(
        lambda: ChangeRequest.objects.get(pk=earlier.pk).status not in ("scheduled", "applying"), 60, 0.5, "refusal"
    )
    earlier.refresh_from_db()
    assert earlier.status == ChangeRequest.Status.FAILED
    assert host1.name in earlier.status_message and "RAM replacement" in earlier.status_message
    assert set(earlier.targets.values_list("status", flat=True)) == {ChangeTarget.Status.SKIPPED}
    assert virsh(host1.uri, "schedinfo", guest1.name, "--live") == quota_before  # nothing was changed
    assert AuditEvent.objects.filter(change_request=earlier, action="change.aborted").count() == 1
    detail = ap.get(f"/changes/{earlier.pk}/").content.decode()
    assert "RAM replacement" in detail


@pytest.mark.django_db
def test_removing_a_host_keeps_its_change_requests_and_audit_readable(
    fleet: Fleet,
    fleet_hosts: list[Host],
    operator: User,
    approver: User,
    viewer: User,
    admin_user: User,
    login: Callable[[User], Client],
) -> None:
    admin, view = login(admin_user), login(viewer)
    guest = _web_guest(fleet, 3)
    host = guest.host
    guest_names = set(Domain.objects.filter(host=host).values_list("name", flat=True))
    cr = _pending_request(operator, [guest])

    wrong = admin.post(f"/hosts/{host.pk}/remove/", {"confirm": "not-the-name"})
    assert wrong.status_code == 400 and f"Type {host.name} exactly" in wrong.content.decode()
    assert Host.objects.filter(pk=host.pk).exists() and Domain.objects.filter(host=host).count() == len(guest_names)
    assert view.post(f"/hosts/{host.pk}/remove/", {"confirm": host.name}).status_code == 403
    assert view.delete(f"/api/hosts/{host.pk}/").status_code == 403

    assert admin.post(f"/hosts/{host.pk}/remove/", {"confirm": host.name}).status_code == 302
    assert not Host.objects.filter(pk=host.pk).exists() and Host.all_objects.get(pk=host.pk).is_removed
    assert not Domain.objects.filter(name__in=guest_names).exists()  # its guests left the inventory
    assert host.name not in view.get("/").content.decode()
    assert host.pk not in [h["id"] for h in view.get("/api/hosts/").json()["results"]]
    assert view.get(f"/api/hosts/{host.pk}/").status_code == 404
    removed_page = view.get(f"/hosts/{host.pk}/")
    assert removed_page.status_code == 410 and 'data-flag="removed"' in removed_page.content.decode()

    # The change request and the audit log still say which host and guest.
    page = view.get(f"/changes/{cr.pk}/")
    assert page.status_code == 200
    assert host.name in page.content.decode() and guest.name in page.content.decode()
    api = view.get(f"/api/change-requests/{cr.pk}/")
    assert api.status_code == 200 and guest.name in str(api.json())
    events = view.get(f"/api/audit-events/?host={host.pk}")
    assert events.status_code == 200
    removal = [e for e in events.json()["results"] if e["action"] == "host.remove"]
    assert len(removal) == 1 and set(removal[0]["before"]["guests"]) == guest_names
    assert view.get(f"/audit/?host={host.pk}").status_code == 200

    # A change approved before the removal is refused when it starts; the name and URI may be registered again.
    approve_change_request(cr.pk, actor=approver)
    start_change_request(cr.pk)
    cr.refresh_from_db()
    assert cr.status == ChangeRequest.Status.FAILED
    assert f"{host.name} was removed from the inventory" in cr.status_message
    again = admin.post("/api/hosts/", {"name": host.name, "uri": host.uri}, content_type="application/json")
    assert again.status_code == 201, again.content
    assert again.json()["id"] != host.pk


@pytest.mark.django_db
def test_editing_a_host_validates_the_uri_and_a_bad_value_changes_nothing(
    fleet_hosts: list[Host], admin_user: User, operator: User, login: Callable[[User], Client]
) -> None:
    admin = login(admin_user)
    host, other = fleet_hosts[0], fleet_hosts[1]
    before = Host.objects.values().get(pk=host.pk)
    events = AuditEvent.objects.count()

    for uri, words in (
        ("qemu+ext:///system?command=/bin/sh", "ext"),
        ("qemu+ssh://kvm01/system?netcat=/tmp/x", "netcat"),
        (other.uri, "Another host already has this libvirt URI"),
    ):
        page = admin.post(f"/hosts/{host.pk}/edit/", {"name": "renamed", "uri": uri})
        assert page.status_code == 400, uri
        assert words in page.content.decode() and 'id="id_uri_errors"' in page.content.decode(), uri
        api = admin.patch(f"/api/hosts/{host.pk}/", {"uri": uri}, content_type="application/json")
        assert api.status_code == 400 and "uri" in api.json(), (uri, api.content)
    unverified = admin.patch(f"/api/hosts/{host.pk}/", {"allow_unverified": True}, content_type="application/json")
    assert unverified.status_code == 400 and "allow_unverified" in unverified.json()  # refused, not dropped
    taken = admin.patch(f"/api/hosts/{host.pk}/", {"name": other.name}, content_type="application/json")
    assert taken.status_code == 400 and "name" in taken.json()
    assert login(operator).patch(f"/api/hosts/{host.pk}/", {"name": "x"}, "application/json").status_code == 403
    assert Host.objects.values().get(pk=host.pk) == before
    assert AuditEvent.objects.count() == events

    assert admin.get(f"/hosts/{host.pk}/edit/").status_code == 200
    saved = admin.post(f"/hosts/{host.pk}/edit/", {"name": "renamed", "uri": host.uri})
    assert saved.status_code == 302
    host.refresh_from_db()
    assert host.name == "renamed" and host.status == Host.Status.UP  # same URI: still known to be up
    event = AuditEvent.objects.get(host=host, action=AuditEvent.Action.HOST_UPDATE)
    assert (event.actor, event.before, event.after) == (admin_user, {"name": before["name"]}, {"name": "renamed"})

    shown = admin.get(f"/api/hosts/{host.pk}/").json()  # a PUT of what GET answered, with a new URI
    elsewhere = host.uri.replace("127.0.0.1", "localhost")
    moved = admin.put(f"/api/hosts/{host.pk}/", {**shown, "uri": elsewhere}, "application/json")
    assert moved.status_code == 200, moved.content
    host.refresh_from_db()
    assert host.uri.startswith("qemu+tcp://localhost:") and host.status == Host.Status.UNKNOWN


@pytest.mark.django_db
def test_a_host_with_a_change_in_progress_is_not_removed(
    operator: User, admin_user: User, login: Callable[[User], Client]
) -> None:
    host = create_host(name="busy", uri="qemu+tcp://127.0.0.1:1/system", actor=None)
    profile = create_profile(name="cap", description="", content=CONTENT, actor=operator)
    cr = ChangeRequest.objects.create(
        profile_revision=profile.revisions.get(), scope="live", reason="cap", requested_by=operator
    )
    ApplyJob.objects.create(change_request=cr, host=host, kind=ApplyJob.Kind.ROLLBACK, status=ApplyJob.Status.RUNNING)
    admin = login(admin_user)

    refused = admin.delete(f"/api/hosts/{host.pk}/")
    assert refused.status_code == 409 and f"#{cr.pk}" in refused.json()["detail"][0]
    page = admin.post(f"/hosts/{host.pk}/remove/", {"confirm": "busy"})
    assert page.status_code == 400 and "has a change in progress" in page.content.decode()
    assert Host.objects.filter(pk=host.pk).exists()
    assert not AuditEvent.objects.filter(host=host, action=AuditEvent.Action.HOST_REMOVE).exists()

    ApplyJob.objects.filter(change_request=cr).update(status=ApplyJob.Status.DONE)
    assert admin.delete(f"/api/hosts/{host.pk}/").status_code == 204
    assert not Host.objects.filter(pk=host.pk).exists()


@pytest.mark.django_db(transaction=True)
def test_a_host_removed_while_it_is_being_read_gets_nothing_stored(fleet_hosts: list[Host], admin_user: User) -> None:
    from django.db import transaction

    from hosts.host_lifecycle import remove_host
    from hosts.inventory import begin_reading_hosts, store_reads

    host = fleet_hosts[2]
    reads = begin_reading_hosts([host.pk])()  # the read finished; the removal lands before it is stored
    remove_host(host.pk, actor=admin_user)
    with transaction.atomic():
        [result] = store_reads(reads)
    assert not result.ok and "removed" in result.error
    assert not Domain.objects.filter(host_id=host.pk).exists(), "the removed host's guests came back"
    assert Host.all_objects.get(pk=host.pk).removed_at is not None
