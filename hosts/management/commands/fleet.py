"""``manage.py fleet up|down|status``: the local libvirt fleet for the demo (or the tests)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from hosts.harness.fleet import Fleet, FleetError, demo_fleet, test_fleet
from hosts.inventory import create_host
from hosts.models import Host


class Command(BaseCommand):
    help = "Start, stop or show the local fleet of libvirt hosts with tiny real guests."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["up", "down", "status"])
        parser.add_argument(
            "--which",
            choices=["demo", "test"],
            default="demo",
            help="The demo fleet (make run) or the tests' fleet.",
        )
        parser.add_argument(
            "--register",
            action="store_true",
            help="After 'up', register the fleet's hosts in the inventory (idempotent).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        fleet: Fleet = (demo_fleet if options["which"] == "demo" else test_fleet)(settings.VAR_DIR)
        action = options["action"]
        if action == "up":
            try:
                members = fleet.up()
            except FleetError as exc:
                raise CommandError(str(exc)) from exc
            mode = "KVM" if fleet.use_kvm else "TCG (no usable /dev/kvm)"
            for member in members:
                self.stdout.write(f"{member.name}: {member.uri} ({len(member.guest_names)} guests, {mode})")
            if options["register"]:
                for member in members:
                    if not Host.objects.filter(uri=member.uri).exists():
                        create_host(name=member.name, uri=member.uri, actor=None)
                        self.stdout.write(f"registered {member.name}")
        elif action == "down":
            try:
                fleet.down()
            except FleetError as exc:
                raise CommandError(str(exc)) from exc
            self.stdout.write(f"fleet '{fleet.prefix}' stopped")
        else:
            for row in fleet.status():
                state = f"pid {row['pid']}" if row["running"] else "not running"
                self.stdout.write(f"{row['name']}: {row['uri']} {state}")
                for guest in row["guests"]:  # type: ignore[attr-defined]
                    self.stdout.write(f"    {guest}")
