"""The live charts' websockets, through the real ASGI stack (origin check, sessions) and the real Redis layer."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.test import Client

from hosts.inventory import create_host
from hosts.live import history, push
from hosts.models import AuditEvent, Domain, Host
from isoweb.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = (b"origin", b"http://127.0.0.1:8000")


@pytest.fixture
def guest(redis_server: str) -> Domain:
    host = create_host(name="charthost", uri="qemu+tcp://127.0.0.1:16999/system", actor=None)
    return Domain.objects.create(
        host=host,
        uuid=uuid.uuid4(),
        name="chartguest",
        state=Domain.State.RUNNING,
        tuning_live={"sched": {"vcpu_period": 100000, "vcpu_quota": 20000, "emulator_period": 100000}},
    )


def cookie_for(user: User, login: Callable[[User], Client]) -> tuple[bytes, bytes]:
    client = login(user)
    return (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


async def connect(path: str, *headers: tuple[bytes, bytes]) -> tuple[WebsocketCommunicator, bool, Any]:
    communicator = WebsocketCommunicator(application, path, headers=list(headers))
    connected, code = await communicator.connect(timeout=10)
    return communicator, connected, code


async def refused(path: str, *headers: tuple[bytes, bytes]) -> Any:
    communicator, connected, code = await connect(path, *headers)
    if connected:
        await communicator.disconnect()
    assert not connected
    return code


def group_members(kind: str, object_id: int) -> int:
    """Count the channels in a chart's group, straight from the channel layer's Redis sorted set."""
    return int(history.client().zcard(f"asgi:group:{push.group_name(kind, object_id)}"))


def test_an_anonymous_visitor_is_refused_and_never_joins_the_group(guest: Domain) -> None:
    code = run(refused(f"/ws/guests/{guest.pk}/", ORIGIN))
    assert code == 4401
    assert group_members(push.GUEST, guest.pk) == 0


def test_a_logged_in_user_without_a_role_is_refused_and_never_joins_the_group(
    guest: Domain, outsider: User, login: Callable[[User], Client]
) -> None:
    code = run(refused(f"/ws/hosts/{guest.host_id}/", ORIGIN, cookie_for(outsider, login)))
    assert code == 4403
    assert group_members(push.HOST, guest.host_id) == 0


def test_a_viewer_from_another_origin_is_refused(guest: Domain, viewer: User, login: Callable[[User], Client]) -> None:
    run(refused(f"/ws/guests/{guest.pk}/", (b"origin", b"http://evil.example.com"), cookie_for(viewer, login)))
    assert group_members(push.GUEST, guest.pk) == 0


def test_a_chart_of_a_guest_that_does_not_exist_is_refused(
    guest: Domain, viewer: User, login: Callable[[User], Client]
) -> None:
    assert run(refused("/ws/guests/999999/", ORIGIN, cookie_for(viewer, login))) == 4404


def test_a_viewer_gets_history_caps_and_markers_at_once_and_marks_the_chart_watched(
    guest: Domain, viewer: User, login: Callable[[User], Client]
) -> None:
    now = time.time()
    pipe = history.client().pipeline()
    for age in (3, 2, 1):
        frame = {"t": now - age, "n": [0], "v": [float(age)], "d": [0.0], "o": 1.0, "g": 2.0}
        history.add(pipe, history.FULL, push.GUEST, guest.pk, history.dumps(frame), now - age)
    pipe.execute()
    AuditEvent.objects.create(
        action=AuditEvent.Action.CHANGE_APPLIED, domain=guest, object_repr=guest.name, message="cap20 applied"
    )
    AuditEvent.objects.create(action=AuditEvent.Action.CHANGE_CREATE, domain=guest, object_repr=guest.name)

    cookie = cookie_for(viewer, login)

    async def scenario() -> dict[str, Any]:
        communicator, connected, _ = await connect(f"/ws/guests/{guest.pk}/", ORIGIN, cookie)
        assert connected
        hello = await communicator.receive_json_from(timeout=10)
        await communicator.disconnect()
        return hello

    hello = run(scenario())
    assert hello["type"] == "hello"
    assert [f["v"][0] for f in hello["frames"]] == [3.0, 2.0, 1.0]
    assert hello["caps"] == {"vcpu": 20.0}
    assert [(m["kind"], m["label"]) for m in hello["markers"]] == [("change.applied", "cap20 applied")]
    assert push.watched(push.GUEST, [guest.pk]) == {guest.pk}
    assert push.watched(push.HOST, [guest.host_id]) == {guest.host_id}


def test_frames_and_markers_sent_to_the_group_from_sync_code_reach_the_browser(
    guest: Domain, viewer: User, login: Callable[[User], Client]
) -> None:
    publisher = push.Publisher()
    text = push.frame_text(push.GUEST, guest.pk, '{"t":1,"n":[0],"v":[99.5],"d":[0.1],"o":1.2,"g":100.7}')

    cookie = cookie_for(viewer, login)

    async def scenario() -> list[dict[str, Any]]:
        communicator, connected, _ = await connect(f"/ws/guests/{guest.pk}/", ORIGIN, cookie)
        assert connected
        await communicator.receive_json_from(timeout=10)  # hello
        await asyncio.get_running_loop().run_in_executor(None, publisher.send, [(push.guest_group(guest.pk), text)])
        received = [await communicator.receive_json_from(timeout=10)]
        await sync_to_async(push.announce_markers)(
            [(guest.pk, guest.host_id, "change.rolled_back", "rolled back", 1_700_000_000.0)]
        )
        received.append(await communicator.receive_json_from(timeout=10))
        received.append(await communicator.receive_json_from(timeout=10))
        await communicator.disconnect()
        return received

    try:
        frame, marker, caps = run(scenario())
    finally:
        publisher.close()
    assert frame == {"type": "frame", "kind": "guest", "id": guest.pk, "frame": json.loads(text)["frame"]}
    assert marker == {"type": "marker", "kind": "change.rolled_back", "label": "rolled back", "t": 1_700_000_000.0}
    # The caps are in force from the marker on: the chart draws the cap line only from there.
    assert caps == {"type": "caps", "caps": {"vcpu": 20.0}, "since": 1_700_000_000.0}


def test_unknown_oversized_and_malformed_client_messages_are_ignored_and_the_socket_stays_open(
    guest: Domain, viewer: User, login: Callable[[User], Client]
) -> None:
    minute = {"t": 60 * int(time.time() // 60 - 5), "n": [0], "v": [42.0], "d": [0.0]}
    pipe = history.client().pipeline()
    history.add(pipe, history.MINUTE, push.GUEST, guest.pk, history.dumps(minute), minute["t"])
    pipe.execute()

    cookie = cookie_for(viewer, login)

    async def scenario() -> dict[str, Any]:
        communicator, connected, _ = await connect(f"/ws/guests/{guest.pk}/", ORIGIN, cookie)
        assert connected
        await communicator.receive_json_from(timeout=10)
        for junk in ("not json", '{"type": "subscribe", "group": "stats.guest.1"}', "[1, 2]", "x" * 10_000):
            await communicator.send_to(text_data=junk)
        await communicator.send_to(bytes_data=b"\x00\x01")
        await communicator.send_to(text_data='{"type": "history", "resolution": "1h"}')
        assert await communicator.receive_nothing(timeout=1)
        await communicator.send_to(text_data='{"type": "history", "resolution": "1m"}')
        answer = await communicator.receive_json_from(timeout=10)
        await communicator.disconnect()
        return answer

    answer = run(scenario())
    assert answer == {"type": "history", "resolution": "1m", "frames": [minute]}


def test_a_host_chart_gets_its_host_frames(guest: Domain, viewer: User, login: Callable[[User], Client]) -> None:
    host = Host.objects.get(pk=guest.host_id)
    publisher = push.Publisher()
    text = push.status_text(push.HOST, host.pk, up=False, reason="the host cannot be reached")

    cookie = cookie_for(viewer, login)

    async def scenario() -> dict[str, Any]:
        communicator, connected, _ = await connect(f"/ws/hosts/{host.pk}/", ORIGIN, cookie)
        assert connected
        hello = await communicator.receive_json_from(timeout=10)
        assert hello["type"] == "hello" and hello["name"] == "charthost"
        await asyncio.get_running_loop().run_in_executor(None, publisher.send, [(push.host_group(host.pk), text)])
        status = await communicator.receive_json_from(timeout=10)
        await communicator.disconnect()
        return status

    try:
        status = run(scenario())
    finally:
        publisher.close()
    assert status["type"] == "status" and status["up"] is False


def test_a_live_marker_from_the_apply_engine_brings_the_caps_it_left_behind(
    guest: Domain, viewer: User, login: Callable[[User], Client]
) -> None:
    cookie = cookie_for(viewer, login)

    async def scenario() -> list[dict[str, Any]]:
        communicator, connected, _ = await connect(f"/ws/guests/{guest.pk}/", ORIGIN, cookie)
        assert connected
        await communicator.receive_json_from(timeout=10)
        # The apply engine writes what it read back to the inventory, then announces after its commit.
        live_tuning = {**(guest.tuning_live or {}), "sched": {"vcpu_period": 100000, "vcpu_quota": 50000}}
        await sync_to_async(Domain.objects.filter(pk=guest.pk).update)(tuning_live=live_tuning)
        await sync_to_async(push.announce_markers)([(guest.pk, guest.host_id, "applied", "CR-1 applied", time.time())])
        received = [await communicator.receive_json_from(timeout=10) for _ in range(2)]
        await communicator.disconnect()
        return received

    marker, caps = run(scenario())
    assert marker["type"] == "marker" and marker["kind"] == "change.applied"
    assert caps == {"type": "caps", "caps": {"vcpu": 50.0}, "since": marker["t"]}


def test_one_push_to_more_groups_than_the_redis_pool_holds_loses_nothing(
    redis_server: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A tick of a host with 150 guests sends 150 group messages at once; the channel layer's Redis pool
    holds 100 connections, so unbounded, a third of the frames would be dropped ("Too many connections")."""
    layer = get_channel_layer()
    assert layer is not None
    count = 150

    async def join() -> list[str]:
        names = []
        for i in range(count):
            name = await layer.new_channel()
            await layer.group_add(f"pushtest-{i}", name)
            names.append(name)
        return names

    channels = async_to_sync(join)()
    publisher = push.Publisher()
    try:
        with caplog.at_level(logging.WARNING, logger="hosts.live.push"):
            publisher.send([(f"pushtest-{i}", f"frame {i}") for i in range(count)], timeout=30)
    finally:
        publisher.close()
    assert not [r.getMessage() for r in caplog.records if "could not push" in r.getMessage()]

    async def receive_all() -> list[dict[str, Any]]:
        return [await asyncio.wait_for(layer.receive(name), 5) for name in channels]

    assert [m["text"] for m in async_to_sync(receive_all)()] == [f"frame {i}" for i in range(count)]
