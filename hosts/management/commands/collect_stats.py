"""``manage.py collect_stats``: sample every host's CPU counters and feed the live charts until stopped."""

from __future__ import annotations

import os
import signal
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from hosts.live.collector import Collector


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name, "")
    return float(value) if value else default


class Command(BaseCommand):
    help = "Collect per-vCPU and per-host-CPU load from every host for the live charts (runs until stopped)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--interval",
            type=float,
            default=_env_float("ISOWEB_STATS_INTERVAL", 1.0),
            help="seconds between samples of a host whose charts are open (ISOWEB_STATS_INTERVAL, default 1)",
        )
        parser.add_argument(
            "--background-interval",
            type=float,
            default=_env_float("ISOWEB_STATS_BACKGROUND_INTERVAL", 10.0),
            help="seconds between samples of other hosts (ISOWEB_STATS_BACKGROUND_INTERVAL, default 10)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        interval, background = options["interval"], options["background_interval"]
        if not 0.2 <= interval <= background <= 300:
            self.stderr.write("need 0.2 <= --interval <= --background-interval <= 300")
            raise SystemExit(2)
        collector = Collector(interval=interval, background_interval=background)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: collector.stop())
        self.stdout.write(f"collecting stats every {interval}s (watched hosts) / {background}s (others)")
        collector.run()
