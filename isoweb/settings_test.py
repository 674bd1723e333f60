"""Settings for the test run: the real stack on its own ports, so a running demo is never disturbed."""

import os

os.environ.setdefault("REDIS_URL", f"redis://127.0.0.1:{os.environ.get('ISOWEB_TEST_REDIS_PORT', '6391')}/0")

from isoweb.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast logins in tests
