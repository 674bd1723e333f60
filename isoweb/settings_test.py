"""Settings for the test run: the real stack on its own ports, so a running demo is never disturbed."""

import os

# Hosts that hang are found out in seconds rather than the production defaults' 10-15 s (the tests' fleet is
# local: a healthy daemon answers in milliseconds). The worker, beat and collector the tests start inherit these.
for _name, _value in {
    "ISOWEB_LIBVIRT_OPEN_TIMEOUT": "3",
    "ISOWEB_LIBVIRT_CALL_TIMEOUT": "5",
    "ISOWEB_LIBVIRT_KEEPALIVE_INTERVAL": "1",
    "ISOWEB_LIBVIRT_KEEPALIVE_COUNT": "3",
    "ISOWEB_STATS_TIMEOUT": "2",
}.items():
    os.environ.setdefault(_name, _value)

os.environ.setdefault("REDIS_URL", f"redis://127.0.0.1:{os.environ.get('ISOWEB_TEST_REDIS_PORT', '6391')}/0")

from isoweb.settings import *  # noqa: E402, F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast logins in tests
