"""``manage.py watch_drift``: turn every host's libvirt events into drift checks until stopped."""

from __future__ import annotations

import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand

from hosts.drift.watch import DriftWatcher


class Command(BaseCommand):
    help = (
        "Subscribe to every host's libvirt domain events (tunable, lifecycle) and check the guest an event names "
        "against its desired state, recording drift within about a second (runs until stopped)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        self.stdout.write("watching every host's libvirt events for drift")
        self.stdout.flush()
        DriftWatcher().run(stop)
