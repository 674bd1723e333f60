"""Production settings from the environment: `check --deploy` is clean, and the headers and cookies say so.

The settings are loaded in fresh processes (``isoweb.settings``, not the tests' settings) with a production
environment, the way a deployment starts them; the local defaults are checked too, so the test shows the
environment is what makes the difference. The Content-Security-Policy is checked on real answers.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client

BASE_DIR = Path(settings.BASE_DIR)


def _environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The process environment with nothing of the tests' own settings, a private var dir and ``extra``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("ISOWEB_", "DJANGO_", "SECURE_", "SESSION_", "CSRF_"))
        and key not in ("DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "DATABASE_URL")
    }
    return {
        **env,
        "DJANGO_SETTINGS_MODULE": "isoweb.settings",
        "ISOWEB_VAR_DIR": str(tmp_path / "var"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        **extra,
    }


def _production(tmp_path: Path, **extra: str) -> dict[str, str]:
    return _environment(
        tmp_path,
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="isoweb.example.com",
        CSRF_TRUSTED_ORIGINS="https://isoweb.example.com",
        ISOWEB_HTTPS="1",
        ISOWEB_PROXY_SSL_HEADER="1",
        **extra,
    )


def _check_deploy(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_is_clean_with_production_environment(tmp_path: Path) -> None:
    result = _check_deploy(_production(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_check_deploy_flags_the_local_defaults(tmp_path: Path) -> None:
    """Without the production variables the same check fails, naming what a deployment must set."""
    result = _check_deploy(_environment(tmp_path))
    assert result.returncode != 0
    for check in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert check in result.stderr, result.stderr


def test_production_values_come_from_the_environment(tmp_path: Path) -> None:
    names = [
        "DEBUG",
        "SESSION_COOKIE_SECURE",
        "CSRF_COOKIE_SECURE",
        "SECURE_SSL_REDIRECT",
        "SECURE_HSTS_SECONDS",
        "SECURE_HSTS_INCLUDE_SUBDOMAINS",
        "SECURE_PROXY_SSL_HEADER",
    ]
    script = (
        "import json, django; from django.conf import settings; django.setup(); "
        f"print(json.dumps({{n: getattr(settings, n) for n in {names!r}}}))"
    )

    def read(env: dict[str, str]) -> dict[str, object]:
        result = subprocess.run(
            [sys.executable, "-c", script], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stderr
        return dict(json.loads(result.stdout.strip().splitlines()[-1]))

    production = read(_production(tmp_path))
    assert production == {
        "DEBUG": False,
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "SECURE_SSL_REDIRECT": True,
        "SECURE_HSTS_SECONDS": 31536000,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
        "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"],
    }
    local = read(_environment(tmp_path))
    assert local["DEBUG"] is False and local["SESSION_COOKIE_SECURE"] is False
    assert local["SECURE_PROXY_SSL_HEADER"] is None  # trusting X-Forwarded-Proto is opt-in only


@pytest.mark.django_db
def test_every_page_carries_a_content_security_policy_without_inline_script(
    viewer: User, login: Callable[[User], Client]
) -> None:
    client = login(viewer)
    for path in ("/", "/guests/", "/changes/", "/accounts/login/"):
        response = client.get(path)
        policy = response.headers.get("Content-Security-Policy", "")
        directives = dict(part.strip().split(" ", 1) for part in policy.split(";") if part.strip())
        assert directives.get("script-src") == "'self'", (path, policy)
        assert directives.get("frame-ancestors") == "'none'" and directives.get("object-src") == "'none'"
    api = client.get("/api/hosts/")
    assert "script-src 'self'" in api.headers["Content-Security-Policy"]


def test_no_template_has_an_inline_script_or_event_handler() -> None:
    """The policy forbids inline scripts; a template that added one would break in every browser."""
    offenders = []
    for template in (BASE_DIR / "templates").rglob("*.html"):
        text = template.read_text()
        for match in re.finditer(r"<script\b([^>]*)>", text):
            if "src=" not in match.group(1):
                offenders.append(f"{template.relative_to(BASE_DIR)}: inline <script>")
        if re.search(r"\son[a-z]+\s*=\s*[\"']", text):
            offenders.append(f"{template.relative_to(BASE_DIR)}: inline event handler")
    assert not offenders, offenders
