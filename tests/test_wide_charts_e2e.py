"""A 64-vCPU guest's charts in headless Chromium: they open on the vCPUs' max, mean and min plus the busiest
few, every vCPU is still there to show, and showing them all draws them.

The guest and its frames are made here (rows and history, then live frames through the real channel layer
to a real Daphne): the test fleet's guests have one or two vCPUs, and a 64-vCPU guest does not fit on this
2-core machine. What the browser receives has the collector's exact shape; the collector is tested on the
real fleet in test_collector.py and test_live_charts_e2e.py.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from django.contrib.auth.models import User

from hosts.live import history, push
from hosts.models import Domain, Host, HostCPU, NumaCell
from tests.conftest import logged_in_page, wait_for

pytestmark = [pytest.mark.fleet, pytest.mark.django_db(transaction=True)]

VCPUS = 64
BUSY = (10, 20, 30, 40)


def _frame(t: float) -> str:
    load = [90.0 if n in BUSY else 5.0 for n in range(VCPUS)]
    return history.dumps(
        {"t": round(t, 3), "n": list(range(VCPUS)), "v": load, "d": [0.5] * VCPUS, "o": 2.0, "g": sum(load) + 2}
    )


@pytest.fixture
def wide_guest(db: None, redis_server: str) -> Iterator[Domain]:
    """A 64-vCPU guest on a 64-CPU host (rows only), with a minute of history and live frames every second."""
    host = Host.objects.create(name="wide-host", uri="qemu+tcp://127.0.0.1:9/system", transport="tcp")
    cell = NumaCell.objects.create(host=host, cell_id=0)
    HostCPU.objects.bulk_create(
        HostCPU(host=host, cell=cell, cpu_id=c, socket_id=0, core_id=c, siblings=str(c)) for c in range(64)
    )
    tuning = {"vcpupin": {str(n): str(n) for n in range(VCPUS)}, "emulatorpin": "0", "iothreadpin": {}, "sched": {}}
    guest = Domain.objects.create(
        host=host,
        uuid=uuid.uuid4(),
        name="wide64",
        state="running",
        vcpus_current=VCPUS,
        vcpus_max=VCPUS,
        tuning_live=tuning,
        tuning_config=tuning,
    )
    now = time.time()
    pipe = history.client().pipeline(transaction=False)
    for step in range(60):
        history.add(pipe, history.FULL, push.GUEST, guest.pk, _frame(now - 60 + step), now - 60 + step)
    pipe.execute()
    publisher = push.Publisher()
    stop = threading.Event()

    def feed() -> None:
        while not stop.wait(1.0):
            text = _frame(time.time())
            publisher.send([(push.guest_group(guest.pk), push.frame_text(push.GUEST, guest.pk, text))])

    thread = threading.Thread(target=feed, daemon=True)
    thread.start()
    try:
        yield guest
    finally:
        stop.set()
        thread.join(timeout=10)
        publisher.close()


def test_a_64_vcpu_guest_opens_on_its_summary_and_busiest_vcpus(
    wide_guest: Domain,
    web_server: str,
    viewer: User,
) -> None:
    with logged_in_page(web_server, viewer) as page:
        page.goto(f"{web_server}/guests/{wide_guest.pk}/")
        cpu_chart = page.locator("[data-chart=guest-cpu]")
        wait_for(lambda: cpu_chart.locator(".u-legend .u-series").count() > VCPUS, 30, 0.5, "the CPU chart")

        def shown() -> list[str]:
            return cpu_chart.locator(".u-legend .u-series:not(.u-off) .u-label").all_inner_texts()

        labels = shown()
        assert {f"vCPU {n}" for n in BUSY} <= set(labels), labels
        assert {"vCPUs max", "vCPUs mean", "vCPUs min"} <= set(labels), labels
        assert not [label for label in labels if label.startswith("vCPU ") and int(label[5:]) not in BUSY]
        assert cpu_chart.locator(".u-legend .u-series .u-label").count() >= VCPUS + 3  # every vCPU is listed
        latest = page.get_attribute("[data-latest]", "data-latest") or "{}"
        assert '"63":5' in latest.replace(" ", ""), latest  # every vCPU's value still arrives
        # "all" shows every series, and the next updates draw them (they are not empty columns).
        page.locator("[data-series-all=show]").first.click()
        wait_for(lambda: len(shown()) >= VCPUS + 3, 10, 0.25, "every series shown")
        before = int(page.get_attribute("[data-live-root]", "data-rendered") or 0)
        wait_for(
            lambda: int(page.get_attribute("[data-live-root]", "data-rendered") or 0) > before,
            10,
            0.25,
            "a redraw with every series",
        )
