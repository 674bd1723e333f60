"""Recovery without a restart: Redis (the broker and channel layer) stopped and started again under a running
worker, beat and collector; a change approved while the broker is down is applied once it is back."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.test import Client

from hosts.harness.fleet import Fleet
from hosts.live import history, push
from hosts.live.collector import Collector
from hosts.models import ChangeRequest, Host
from tests.conftest import RedisServer, wait_for
from tests.test_apply_failures import Webs, by_name, keeper, propose, tuning, webs  # noqa: F401 - fixtures

pytestmark = [pytest.mark.fleet, pytest.mark.django_db(transaction=True)]

OUTAGE_SECONDS = 12


def newest_frame_time(host: Host) -> float:
    frames = history.recent(push.HOST, host.pk, seconds=120)
    return float(json.loads(frames[-1])["t"]) if frames else 0.0


def test_worker_beat_and_collector_carry_on_after_redis_restarts_and_an_approval_made_meanwhile_is_applied(
    fleet: Fleet,
    fleet_hosts: list[Host],
    webs: Webs,  # noqa: F811
    redis_control: RedisServer,
    celery_worker: subprocess.Popen[bytes],
    start_beat: Callable[..., subprocess.Popen[bytes]],
    operator: User,
    approver: User,
    login: Callable[[User], Client],
) -> None:
    beat = start_beat(ISOWEB_SYNC_INTERVAL="2", ISOWEB_DUE_CHECK_INTERVAL="2")
    collector = Collector(interval=1.0, background_interval=1.0)
    runner = threading.Thread(target=collector.run)
    runner.start()
    try:
        host = fleet_hosts[0]
        wait_for(lambda: newest_frame_time(host) > 0, 20, what="the collector's first frames")
        cr_id = propose(login(operator), {"sched": {"vcpu_period": 100000, "vcpu_quota": 40000}}, webs.names[:1])

        redis_control.stop()
        asked = time.monotonic()
        approved = login(approver).post(f"/api/change-requests/{cr_id}/approve/", {"comment": "during the outage"})
        assert approved.status_code == 200, approved.content
        assert time.monotonic() - asked < 10, "queueing should give up within seconds while the broker is down"
        assert "unreachable" in approved.json()["warning"]
        assert ChangeRequest.objects.get(pk=cr_id).status == ChangeRequest.Status.SCHEDULED
        page = login(approver).get(f"/changes/{cr_id}/").content.decode()
        assert "task queue (Redis) is not answering" in page
        time.sleep(OUTAGE_SECONDS)
        redis_control.start()
        back_at = time.time()

        # Nobody restarts anything: the beat's due check starts the approved request, the worker applies it.
        wait_for(
            lambda: ChangeRequest.objects.get(pk=cr_id).status == ChangeRequest.Status.APPLIED,
            60,
            0.5,
            "the change approved during the outage applied",
        )
        assert tuning(fleet.host(0).uri, webs.names[0], "--live")["sched"]["vcpu_quota"] == "40000"
        done = login(approver).get(f"/api/change-requests/{cr_id}/").json()
        assert by_name(done)[webs.names[0]]["status"] == "applied"
        # Periodic syncs and the live charts resume by themselves.
        host_ids = [h.pk for h in fleet_hosts]
        wait_for(
            lambda: all(h.last_sync_at.timestamp() > back_at for h in Host.objects.filter(pk__in=host_ids)),
            30,
            0.5,
            "every host synced after Redis came back",
        )
        wait_for(lambda: newest_frame_time(host) > back_at, 20, 0.5, "fresh chart frames after Redis came back")
        assert celery_worker.poll() is None and beat.poll() is None
        assert "is not answering" not in login(approver).get("/").content.decode()
    finally:
        collector.stop()
        runner.join(timeout=20)
