"""An idle chart websocket stays open: 30 s with nothing to send, then the next frame still arrives.

Real parts only: Daphne on a loopback port, the real Redis channel layer, and Debian's Chromium (Playwright)
holding a plain ``WebSocket`` to a guest's chart as a logged-in viewer. No collector runs, so nothing is
pushed while the socket idles; the consumer meanwhile sits in the channel layer's blocking receive, which
Redis holds for 5 s at a time. With redis-py 8's default 5 s socket timeout that receive failed with
``TimeoutError: Timeout reading from ...`` and Daphne closed the socket (issue 10); the channel layer's
timeouts are now set in ``CHANNEL_LAYERS`` (isoweb/settings.py).

With those timeouts set, a consumer must still end when its socket closes: on Python 3.11 redis-py's
``wait_for``-bounded writes could swallow the cancellation of the channel layer's receive, which then polled
Redis for ever (see isoweb/redis_connection.py). The second test closes many refused sockets and requires each
consumer to finish within seconds.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User

from hosts.live import push
from hosts.models import Domain, Host
from isoweb.asgi import application
from tests.conftest import ARTIFACTS, logged_in_page, wait_for

pytestmark = [pytest.mark.fleet, pytest.mark.django_db(transaction=True)]

IDLE_SECONDS = 30

OPEN_SOCKET = """
(path) => new Promise((resolve, reject) => {
  const state = {messages: [], closed: null, error: false};
  window.idleSocketState = state;
  const socket = new WebSocket(`ws://${location.host}${path}`);
  window.idleSocket = socket;
  socket.onmessage = (event) => state.messages.push(event.data);
  socket.onerror = () => { state.error = true; };
  socket.onclose = (event) => {
    state.closed = {code: event.code, reason: event.reason, clean: event.wasClean};
    reject(new Error(`closed before opening: ${event.code}`));
  };
  socket.onopen = () => resolve(true);
  setTimeout(() => reject(new Error('not open within 10 s')), 10000);
})
"""

SOCKET_STATE = "() => ({readyState: window.idleSocket.readyState, ...window.idleSocketState})"


def test_an_idle_chart_websocket_stays_open_for_30_s_and_then_receives_the_next_frame(
    web_server: str, fleet_hosts: list[Host], viewer: User
) -> None:
    guest = Domain.objects.filter(host=fleet_hosts[0], state=Domain.State.RUNNING).order_by("name").first()
    assert guest is not None, "the fleet's first host has no running guest"
    path = f"/ws/guests/{guest.pk}/"
    daphne_log = ARTIFACTS / "daphne.log"

    with logged_in_page(web_server, viewer) as page:
        # The login lands on a page of the app (same origin, session cookie set); the socket is opened by
        # hand so no page script reconnects it behind the test's back.
        page.evaluate(OPEN_SOCKET, path)

        def state() -> dict[str, Any]:
            return dict(page.evaluate(SOCKET_STATE))

        wait_for(lambda: state()["messages"], 10, 0.2, "the chart's hello message")
        hello = json.loads(state()["messages"][0])
        assert hello["type"] == "hello" and hello["id"] == guest.pk

        # Idle: no collector runs, nothing is pushed. Check every few seconds so a close is reported when it
        # happens, with Daphne's log, instead of only at the end.
        for _ in range(IDLE_SECONDS // 5):
            page.wait_for_timeout(5000)
            now = state()
            assert now["closed"] is None and now["readyState"] == 1, (
                f"the idle websocket was closed: {now['closed']}; Daphne's log ends with:\n"
                f"{daphne_log.read_text(errors='replace')[-3000:]}"
            )
        assert len(state()["messages"]) == 1, "something was pushed while the socket was meant to be idle"

        frame = {"t": 1.0, "n": [0], "v": [42.5], "d": [0.0], "o": 1.0, "g": 2.0}
        publisher = push.Publisher()
        try:
            publisher.send([(push.guest_group(guest.pk), push.frame_text(push.GUEST, guest.pk, json.dumps(frame)))])
        finally:
            publisher.close()

        wait_for(lambda: len(state()["messages"]) >= 2, 10, 0.2, "the frame pushed after the idle spell")
        final = state()
        pushed = json.loads(final["messages"][1])
        assert pushed["type"] == "frame" and pushed["id"] == guest.pk
        assert pushed["frame"]["v"] == [42.5]
        assert final["closed"] is None and final["readyState"] == 1
        page.evaluate("() => window.idleSocket.close()")

    log_text = daphne_log.read_text(errors="replace")
    assert "TimeoutError" not in log_text, f"Daphne logged a TimeoutError:\n{log_text[-3000:]}"
    assert "Traceback" not in log_text, f"Daphne logged a traceback:\n{log_text[-3000:]}"


def test_consumers_of_refused_sockets_finish_at_once_with_the_timeouts_set(redis_server: str) -> None:
    """Each refused socket's consumer (and its channel-layer receive) ends within seconds of the disconnect."""

    async def scenario() -> list[float]:
        took = []
        for _ in range(25):
            communicator = WebsocketCommunicator(
                application, "/ws/guests/1/", headers=[(b"origin", b"http://127.0.0.1")]
            )
            connected, code = await communicator.connect(timeout=10)
            assert not connected and code == 4401
            start = time.monotonic()
            # Tells the consumer the socket is gone and waits for the application to finish; it fails with a
            # TimeoutError after 4 s if the consumer is still receiving from the channel layer.
            await communicator.disconnect(timeout=4)
            took.append(time.monotonic() - start)
        return took

    took = asyncio.run(asyncio.wait_for(scenario(), 150))
    assert max(took) < 2, f"a consumer took {max(took):.1f} s to finish after its socket closed"
