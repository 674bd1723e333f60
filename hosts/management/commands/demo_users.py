"""``manage.py demo_users``: one demo user per role, with random passwords printed (never stored in git)."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.management.base import BaseCommand

from hosts.private_files import private_dir, write_private
from hosts.roles import ROLES, ensure_role_groups


class Command(BaseCommand):
    help = "Create the four roles and one demo user each; print their credentials."

    def handle(self, *args: Any, **options: Any) -> None:
        groups = ensure_role_groups()
        path = Path(settings.VAR_DIR) / "demo-credentials.txt"
        known: dict[str, str] = {}
        if path.exists():
            known = dict(line.split(" ", 1) for line in path.read_text().splitlines() if " " in line)
        lines = []
        for role in ROLES:
            user, created = User.objects.get_or_create(username=role)
            password = known.get(role)
            if created or password is None or not user.check_password(password):
                password = secrets.token_urlsafe(12)
                user.set_password(password)
            # The admin role manages users on isoweb's own Users page; /django-admin/ is for superusers only.
            user.is_staff = False
            user.save()
            user.groups.set([groups[role]])
            lines.append(f"{role} {password}")
        private_dir(path.parent)
        write_private(path, "\n".join(lines) + "\n")  # 0600 from its creation, never readable by others
        self.stdout.write("Demo users (username / password), also in " + str(path) + ":")
        for line in lines:
            username, password = line.split(" ", 1)
            self.stdout.write(f"  {username:<9} {password}")
