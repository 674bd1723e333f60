"""List pages and API lists cost the same number of queries for 5 guests as for 50 (no N+1)."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from hosts.models import (
    ApplyJob,
    AuditEvent,
    ChangeRequest,
    ChangeTarget,
    Domain,
    Host,
    HostCPU,
    NumaCell,
    PinProfile,
    PinProfileRevision,
)

TUNING = {
    "vcpupin": {"0": "0", "1": "1-3"},
    "emulatorpin": "0-3",
    "iothreadpin": {"1": "2"},
    "sched": {"cpu_shares": 1024, "vcpu_period": 100000, "vcpu_quota": -1},
}


def _fleet_of(guests: int) -> Host:
    """Two hosts of four CPUs with ``guests`` guests each (rows only: this is about the database)."""
    hosts = []
    for n in range(2):
        host = Host.objects.create(name=f"kvm{n}", uri=f"qemu+tcp://127.0.0.1:{100 + n}/system", transport="tcp")
        cell = NumaCell.objects.create(host=host, cell_id=0)
        HostCPU.objects.bulk_create(
            HostCPU(
                host=host, cell=cell, cpu_id=c, core_id=c // 2, socket_id=0, siblings=f"{c - c % 2}-{c - c % 2 + 1}"
            )
            for c in range(4)
        )
        Domain.objects.bulk_create(
            Domain(
                host=host,
                uuid=uuid.uuid4(),
                name=f"g{n}-{i:03d}",
                state="running",
                vcpus_current=2,
                vcpus_max=2,
                iothread_ids=[1],
                tuning_live=TUNING,
                tuning_config=TUNING,
                affinity={"0": "0", "1": "1-3"},
            )
            for i in range(guests)
        )
        hosts.append(host)
    return hosts[0]


def _count(client: Client, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200, url
    return len(queries)


@pytest.mark.parametrize(
    "url",
    ["/", "/guests/", "/guests/?sort=-vcpus", "/hosts/{host}/", "/api/hosts/", "/api/domains/", "/api/hosts/{host}/"],
)
def test_query_count_does_not_grow_with_guests(url: str, viewer: User, login: Callable[[User], Client]) -> None:
    client = login(viewer)
    small = _fleet_of(5)
    few = _count(client, url.format(host=small.pk))
    assert Domain.objects.count() == 10
    Domain.objects.all().delete()
    Host.objects.all().delete()
    big = _fleet_of(50)
    many = _count(client, url.format(host=big.pk))
    assert Domain.objects.count() == 100
    assert few == many, f"{url}: {few} queries for 5 guests per host, {many} for 50"
    page = client.get(url.format(host=big.pk)).content.decode()
    if url.startswith("/guests") or url.startswith("/api/domains"):
        assert "g1-049" in page  # the 50th guest of the second host is really listed


def _change_requests(count: int, requester: User) -> None:
    """Change requests with a target and a running rollback job each (rows only)."""
    host = Host.objects.first() or _fleet_of(1)
    domain = Domain.objects.filter(host=host).first()
    profile = PinProfile.objects.create(name=f"p{count}")
    revision = PinProfileRevision.objects.create(profile=profile, number=1, content={"sched": {"cpu_shares": 512}})
    for _ in range(count):
        cr = ChangeRequest.objects.create(profile_revision=revision, reason="r", requested_by=requester)
        ChangeTarget.objects.create(
            change_request=cr, host=host, domain=domain, domain_uuid=domain.uuid, domain_name=domain.name, desired={}
        )
        ApplyJob.objects.create(change_request=cr, host=host, kind=ApplyJob.Kind.ROLLBACK)


@pytest.mark.parametrize("url", ["/api/change-requests/", "/changes/"])
def test_change_request_lists_cost_the_same_for_2_and_20_requests(
    url: str, viewer: User, operator: User, login: Callable[[User], Client]
) -> None:
    client = login(viewer)
    _change_requests(2, operator)
    few = _count(client, url)
    _change_requests(18, operator)
    assert ChangeRequest.objects.count() == 20
    many = _count(client, url)
    assert few == many, f"{url}: {few} queries for 2 requests, {many} for 20"
    if url.startswith("/api/"):
        assert all(row["rolling_back"] for row in client.get(url).json()["results"])


def _wide_requests(count: int, guests_each: int, requester: User) -> None:
    """Change requests each aimed at ``guests_each`` guests on both hosts (the list names hosts and guests)."""
    hosts = list(Host.objects.order_by("name")[:2])
    domains = [d for host in hosts for d in Domain.objects.filter(host=host).order_by("name")[: guests_each // 2 + 1]]
    profile = PinProfile.objects.create(name=f"wide{count}-{guests_each}")
    revision = PinProfileRevision.objects.create(profile=profile, number=1, content={"sched": {"cpu_shares": 512}})
    for _ in range(count):
        cr = ChangeRequest.objects.create(profile_revision=revision, reason="spread", requested_by=requester)
        ChangeTarget.objects.bulk_create(
            ChangeTarget(change_request=cr, host=d.host, domain=d, domain_uuid=d.uuid, domain_name=d.name, desired={})
            for d in domains[:guests_each]
        )


@pytest.mark.parametrize("url", ["/changes/", "/changes/?sort=hosts", "/changes/?sort=-guests&status=pending"])
def test_the_change_list_names_hosts_and_guests_at_a_constant_cost(
    url: str, viewer: User, operator: User, login: Callable[[User], Client]
) -> None:
    client = login(viewer)
    _fleet_of(10)
    _wide_requests(2, 2, operator)
    few = _count(client, url)
    _wide_requests(18, 8, operator)
    assert ChangeRequest.objects.count() == 20 and ChangeTarget.objects.count() == 2 * 2 + 18 * 8
    many = _count(client, url)
    assert few == many, f"{url}: {few} queries for 2 small requests, {many} for 20 wider ones"
    page = client.get(url).content.decode()
    assert "kvm0, kvm1" in page and "and 5 more" in page


def _audit_events(count: int, actor: User) -> None:
    """Audit rows naming a host, guest, request and profile each (the page links all four)."""
    host, domain, cr = Host.objects.first(), Domain.objects.first(), ChangeRequest.objects.first()
    AuditEvent.objects.bulk_create(
        AuditEvent(
            actor=actor,
            action=AuditEvent.Action.CHANGE_CREATE,
            host=host,
            domain=domain,
            change_request=cr,
            profile=cr.profile_revision.profile,
            object_repr=f"event {n}",
            before={"n": n},
            after={"n": n + 1},
        )
        for n in range(count)
    )


@pytest.mark.parametrize("url", ["/profiles/", "/profiles/?sort=-latest_at", "/audit/", "/audit/?sort=actor"])
def test_profile_and_audit_lists_cost_the_same_for_few_and_many_rows(
    url: str, viewer: User, operator: User, login: Callable[[User], Client]
) -> None:
    client = login(viewer)
    _change_requests(2, operator)
    _audit_events(2, operator)
    few = _count(client, url)
    for n in range(18):
        PinProfile.objects.create(name=f"more{n}")
    _change_requests(18, operator)
    _audit_events(30, operator)
    many = _count(client, url)
    assert few == many, f"{url}: {few} queries before, {many} with more profiles and requests"


@pytest.mark.parametrize("url", ["/?sort=-domain_count", "/?sort=status", "/guests/?is_stale=false&sort=-vcpus"])
def test_sorted_and_filtered_lists_do_not_grow_with_guests(
    url: str, viewer: User, login: Callable[[User], Client]
) -> None:
    client = login(viewer)
    _fleet_of(5)
    few = _count(client, url)
    Domain.objects.all().delete()
    Host.objects.all().delete()
    _fleet_of(50)
    assert few == _count(client, url)
