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
    # The API throttles count per process in memory, and one pytest process makes every test's calls as the
    # same few users within minutes: no test may be throttled unless it asks (tests/test_throttling.py sets
    # its own rates and a short login cool-off on the server it starts).
    "ISOWEB_API_ANON_RATE": "100000/minute",
    "ISOWEB_API_USER_RATE": "100000/minute",
    "ISOWEB_LOGIN_COOLOFF": "60",
}.items():
    os.environ.setdefault(_name, _value)

os.environ.setdefault("REDIS_URL", f"redis://127.0.0.1:{os.environ.get('ISOWEB_TEST_REDIS_PORT', '6391')}/0")

# ISOWEB_TEST_DB=postgres: the whole run on a private PostgreSQL server started here (and stopped when this
# process exits), unless DATABASE_URL already names a database. The worker, beat and Daphne the tests start
# are given the test database's URL (tests/conftest.py spawn()), so they never start a server of their own.
if os.environ.get("ISOWEB_TEST_DB", "sqlite") == "postgres" and not os.environ.get("DATABASE_URL"):
    from hosts.harness.postgres import start_for_this_process

    start_for_this_process()

from isoweb.settings import *  # noqa: E402, F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast logins in tests
