"""Settings for isoweb, read from the environment with safe defaults for a local run.

Every knob an operator may turn is an environment variable (see README.md). Defaults give a working
single-machine install: SQLite under var/, Redis on localhost, DEBUG off.
"""

import os
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url

from hosts.private_files import private_dir, private_sqlite, tighten, write_private

BASE_DIR = Path(__file__).resolve().parent.parent
# Holds the secret key, the SQLite database and the demo credentials: readable by isoweb's own user only.
VAR_DIR = private_dir(Path(os.environ.get("ISOWEB_VAR_DIR", BASE_DIR / "var")))


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value else default


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name, "")
    return float(value) if value else default


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


def _secret_key(var_dir: Path = VAR_DIR) -> str:
    """Return SECRET_KEY from the environment, or a random key kept under var/ for a local run.

    The key file is 0600 from its creation (in a 0700 directory); if two processes start at once, the first
    file written wins and both read it.
    """
    if key := os.environ.get("SECRET_KEY"):
        return key
    path = var_dir / "secret_key"
    if not path.exists():
        private_dir(var_dir)
        write_private(path, secrets.token_urlsafe(50), replace=False)
    tighten(path, 0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "knox",
    "axes",
    "django_filters",
    "drf_spectacular",
    "django_tables2",
    "hosts",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "isoweb.security.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Pages in the user's own time zone (hosts/timezones.py); the API stays in UTC.
    "hosts.timezones.UserTimeZoneMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: turns a locked-out login into the lockout answer (hosts/views/lockout.py).
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "isoweb.urls"
ASGI_APPLICATION = "isoweb.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "hosts.roles.roles_context",
                "hosts.health.health_context",
                "hosts.menu.menu_context",
            ],
        },
    },
]

# SQLite by default (a file under var/, WAL so the web server and workers can share it); PostgreSQL or
# anything else dj-database-url understands when DATABASE_URL is set.
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'isoweb.sqlite3'}"), conn_max_age=60
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
    # A file, not memory, so the Celery worker the tests start sees the test database.
    DATABASES["default"]["TEST"] = {"NAME": env_str("ISOWEB_TEST_DATABASE", str(VAR_DIR / "test.sqlite3"))}
    _sqlite_name = str(DATABASES["default"]["NAME"])
    if _sqlite_name not in ("", ":memory:") and not _sqlite_name.startswith("file:"):
        private_sqlite(Path(_sqlite_name))  # created 0600 before SQLite first opens it
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Deadlines on the database as on everything else: a connection attempt gives up after
    # ISOWEB_DB_CONNECT_TIMEOUT seconds and a statement (lock waits included) after ISOWEB_DB_STATEMENT_TIMEOUT
    # (0: no limit), so a stuck database costs a request or a task an error, not a worker for good. A
    # persistent connection is checked before reuse, so workers survive a database restart.
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    _pg_options = DATABASES["default"].setdefault("OPTIONS", {})
    _pg_options.setdefault("connect_timeout", env_int("ISOWEB_DB_CONNECT_TIMEOUT", 5))
    _pg_options.setdefault(
        "options", f"-c statement_timeout={int(env_float('ISOWEB_DB_STATEMENT_TIMEOUT', 60.0) * 1000)}"
    )

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "hosts:host-list"
LOGOUT_REDIRECT_URL = "login"

# --- Authentication: lockout (django-axes), API tokens (django-rest-knox), optional LDAP -------------------
# django-axes counts failed logins (the login form and POST /api/auth/token/) per user name and client address
# in the database, so every web server shares the count; after ISOWEB_LOGIN_FAILURE_LIMIT failures that pair
# is refused for ISOWEB_LOGIN_COOLOFF seconds, counted again from each attempt made while locked out.
AXES_FAILURE_LIMIT = env_int("ISOWEB_LOGIN_FAILURE_LIMIT", 10)
AXES_COOLOFF_TIME = timedelta(seconds=env_float("ISOWEB_LOGIN_COOLOFF", 900))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_DISABLE_ACCESS_LOG = True  # last_login says who logged in; a row per success would grow for ever
AXES_LOCKOUT_CALLABLE = "hosts.views.lockout.lockout_response"
AXES_CLIENT_IP_CALLABLE = "hosts.views.lockout.client_address"
# Behind N reverse proxies that each append to X-Forwarded-For, the client is the Nth address from the right;
# 0 (no proxy) takes the connection's own address, and a client cannot forge its way out of a lockout.
ISOWEB_TRUSTED_PROXY_COUNT = env_int("ISOWEB_TRUSTED_PROXY_COUNT", 0)

# API tokens: random, stored only as a SHA-512 digest, expiring after ISOWEB_TOKEN_TTL_HOURS (30 days by
# default: long enough for a script's credentials, short enough that a forgotten token dies by itself).
REST_KNOX = {
    "TOKEN_TTL": timedelta(hours=env_float("ISOWEB_TOKEN_TTL_HOURS", 720)),
    "AUTO_REFRESH": False,
    "AUTH_HEADER_PREFIX": "Token",
}

AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
# LDAP login, only when ISOWEB_LDAP_URI is set: users are looked up under ISOWEB_LDAP_USER_SEARCH_BASE, their
# groups under ISOWEB_LDAP_GROUP_SEARCH_BASE, and ISOWEB_LDAP_ROLE_GROUPS ("operator=cn=ops,ou=groups,dc=x;
# admin=cn=...") gives each role the group whose members hold it, re-read at every login.
ISOWEB_LDAP_URI = env_str("ISOWEB_LDAP_URI", "")
ISOWEB_LDAP_ROLE_GROUPS = env_str("ISOWEB_LDAP_ROLE_GROUPS", "")
if ISOWEB_LDAP_URI:
    import ldap
    from django_auth_ldap.config import GroupOfNamesType, LDAPSearch

    AUTHENTICATION_BACKENDS.insert(1, "hosts.ldap_login.RoleMappingLDAPBackend")
    AUTH_LDAP_SERVER_URI = ISOWEB_LDAP_URI
    AUTH_LDAP_BIND_DN = env_str("ISOWEB_LDAP_BIND_DN", "")
    AUTH_LDAP_BIND_PASSWORD = env_str("ISOWEB_LDAP_BIND_PASSWORD", "")
    AUTH_LDAP_START_TLS = env_bool("ISOWEB_LDAP_START_TLS", False)
    AUTH_LDAP_USER_SEARCH = LDAPSearch(
        env_str("ISOWEB_LDAP_USER_SEARCH_BASE", ""),
        ldap.SCOPE_SUBTREE,
        env_str("ISOWEB_LDAP_USER_FILTER", "(uid=%(user)s)"),
    )
    AUTH_LDAP_GROUP_SEARCH = LDAPSearch(
        env_str("ISOWEB_LDAP_GROUP_SEARCH_BASE", ""),
        ldap.SCOPE_SUBTREE,
        env_str("ISOWEB_LDAP_GROUP_FILTER", "(objectClass=groupOfNames)"),
    )
    AUTH_LDAP_GROUP_TYPE = GroupOfNamesType()
    AUTH_LDAP_USER_ATTR_MAP = {"first_name": "givenName", "last_name": "sn", "email": "mail"}
    AUTH_LDAP_ALWAYS_UPDATE_USER = True
    # Every directory call has a deadline: a directory that does not answer fails the login, never hangs it.
    _ldap_timeout = env_float("ISOWEB_LDAP_TIMEOUT", 5.0)
    AUTH_LDAP_GLOBAL_OPTIONS = {ldap.OPT_NETWORK_TIMEOUT: _ldap_timeout, ldap.OPT_TIMEOUT: _ldap_timeout}

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # WhiteNoise expects it even when serving from finders
STATICFILES_DIRS = [
    BASE_DIR / "static",
    ("uplot", BASE_DIR / "node_modules" / "uplot" / "dist"),
    ("bootstrap", BASE_DIR / "node_modules" / "bootstrap" / "dist"),
    ("swagger-ui", BASE_DIR / "node_modules" / "swagger-ui-dist"),
]
# Serve straight from the finders so a local run needs no collectstatic step.
WHITENOISE_USE_FINDERS = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# --- Production: HTTPS only, HSTS, a TLS-terminating proxy, Content-Security-Policy -------------------------
# ISOWEB_HTTPS=1 says browsers reach isoweb over HTTPS (itself or a proxy in front): cookies go over HTTPS only,
# plain HTTP is redirected, and HSTS tells browsers to use nothing else for SECURE_HSTS_SECONDS (1 year). Each
# can be set on its own too. Off by default so that `make run` works on http://127.0.0.1:8000/.
ISOWEB_HTTPS = env_bool("ISOWEB_HTTPS", False)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", ISOWEB_HTTPS)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", ISOWEB_HTTPS)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", ISOWEB_HTTPS)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000 if ISOWEB_HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", ISOWEB_HTTPS)
# Asking browsers to preload HSTS for the whole domain is the domain owner's decision, not a default; check
# --deploy's reminder of it is silenced unless it is turned on.
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]
# Behind a proxy that terminates TLS and always sets (or strips) X-Forwarded-Proto: trust it for "is this HTTPS".
# Never set it without such a proxy: a client could then claim HTTPS itself.
if env_bool("ISOWEB_PROXY_SSL_HEADER", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
# Content-Security-Policy (isoweb/security.py): scripts from isoweb's own static files only. Empty: no header.
from isoweb.security import DEFAULT_POLICY as _DEFAULT_CSP  # noqa: E402 - beside the only settings using it

ISOWEB_CSP = env_str("ISOWEB_CSP", _DEFAULT_CSP)
ISOWEB_CSP_REPORT_ONLY = env_bool("ISOWEB_CSP_REPORT_ONLY", False)

# Networks host URIs may point at (CIDR list; empty: anywhere but link-local addresses). See hosts/uri.py.
ISOWEB_ALLOWED_HOST_NETWORKS = env_list("ISOWEB_ALLOWED_HOST_NETWORKS", "")

# Redis carries the Celery queue and the Channels layer.
REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
# The channel layer's Redis connections get their timeouts set here, never from redis-py's defaults: a
# consumer waits for its next message with a blocking pop that Redis holds for 5 s (channels-redis'
# brpop_timeout), and redis-py 8 gives up reading after 5 s by default (socket_timeout), so an idle websocket
# died with "TimeoutError: Timeout reading from ..." every ~5 s. The read timeout must stay well above the
# blocking pop; connecting gets a short timeout of its own so a Redis that is down is reported quickly.
CHANNEL_LAYER_BLOCKING_POP_SECONDS = 5  # channels_redis.core.RedisChannelLayer.brpop_timeout
from isoweb.redis_connection import CancellableConnection  # noqa: E402 - kept beside the only setting using it


def _redis_seconds(name: str, default: str, minimum: float, why: str) -> float:
    value = float(env_str(name, default))
    if value < minimum:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(f"{name}={value:g} must be at least {minimum:g} s: {why}")
    return value


REDIS_SOCKET_TIMEOUT = _redis_seconds(
    "ISOWEB_REDIS_SOCKET_TIMEOUT",
    "20",
    CHANNEL_LAYER_BLOCKING_POP_SECONDS + 5,
    f"the channel layer's receive blocks {CHANNEL_LAYER_BLOCKING_POP_SECONDS} s in Redis and idle websockets "
    "would die on a shorter read timeout",
)
REDIS_SOCKET_CONNECT_TIMEOUT = _redis_seconds(
    "ISOWEB_REDIS_SOCKET_CONNECT_TIMEOUT", "3", 0.1, "a connection needs some time to be made"
)
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            # A dict host: "address" is the URL, every other key is passed to redis-py's connection pool.
            "hosts": [
                {
                    "address": REDIS_URL,
                    "socket_timeout": REDIS_SOCKET_TIMEOUT,
                    "socket_connect_timeout": REDIS_SOCKET_CONNECT_TIMEOUT,
                    "socket_keepalive": True,
                    # Writes that a closing websocket can always cancel (see isoweb/redis_connection.py).
                    "connection_class": CancellableConnection,
                    # A pooled connection idle for this long is PINGed before use, so one that Redis or a
                    # firewall dropped meanwhile is replaced instead of failing the next send.
                    "health_check_interval": 30,
                }
            ],
            "capacity": 500,
            "expiry": 30,
        },
    }
}

CELERY_BROKER_URL = REDIS_URL
CELERY_TASK_IGNORE_RESULT = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = 120
CELERY_TASK_TIME_LIMIT = 150
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
ISOWEB_SYNC_INTERVAL = env_int("ISOWEB_SYNC_INTERVAL", 30)
# How often beat looks for approved change requests whose apply time has come.
ISOWEB_DUE_CHECK_INTERVAL = env_int("ISOWEB_DUE_CHECK_INTERVAL", 15)
CELERY_BEAT_SCHEDULE = {
    "sync-all-hosts": {
        "task": "hosts.tasks.sync_all_hosts",
        "schedule": float(ISOWEB_SYNC_INTERVAL),
        "options": {"expires": float(ISOWEB_SYNC_INTERVAL)},
    },
    "apply-due-change-requests": {
        "task": "hosts.tasks.apply_due_change_requests",
        "schedule": float(ISOWEB_DUE_CHECK_INTERVAL),
        "options": {"expires": float(ISOWEB_DUE_CHECK_INTERVAL)},
    },
    # Apply jobs left running by a task that failed or timed out (see hosts.tasks.resume_stalled_jobs).
    "resume-stalled-jobs": {
        "task": "hosts.tasks.resume_stalled_jobs",
        "schedule": 60.0,
        "options": {"expires": 60.0},
    },
}
# A task whose worker dies is handed to another worker (apply jobs are idempotent and claimed by row).
CELERY_TASK_REJECT_ON_WORKER_LOST = False
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env_int("ISOWEB_VISIBILITY_TIMEOUT", 600),
    # A broker that is down is noticed in seconds, not hung on: a page that queues work answers at once.
    "socket_connect_timeout": 2,
    "socket_timeout": 10,
}
# Queueing a task while the broker is down gives up after about a second (the decision is already recorded;
# beat starts approved requests and unsent rollbacks from the database once the broker is back).
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.5, "interval_max": 0.5}

# libvirt connections: keepalive interval (s) and missed answers before a host counts as dead or hung (3 x 3:
# a daemon that stops answering on an open connection is found out within the 10 s open deadline too).
ISOWEB_LIBVIRT_KEEPALIVE_INTERVAL = env_int("ISOWEB_LIBVIRT_KEEPALIVE_INTERVAL", 3)
ISOWEB_LIBVIRT_KEEPALIVE_COUNT = env_int("ISOWEB_LIBVIRT_KEEPALIVE_COUNT", 3)
# Deadlines (seconds) on every libvirt interaction (see hosts/libvirt/deadlines.py): opening a connection,
# one call, and per guest on top of both for a whole host's read or apply.
ISOWEB_LIBVIRT_OPEN_TIMEOUT = env_float("ISOWEB_LIBVIRT_OPEN_TIMEOUT", 10.0)
ISOWEB_LIBVIRT_CALL_TIMEOUT = env_float("ISOWEB_LIBVIRT_CALL_TIMEOUT", 30.0)
ISOWEB_LIBVIRT_PER_GUEST_TIMEOUT = env_float("ISOWEB_LIBVIRT_PER_GUEST_TIMEOUT", 0.5)
# A live chart's tick gives up on its host after this long and says "not answering since ...".
ISOWEB_STATS_TIMEOUT = env_float("ISOWEB_STATS_TIMEOUT", 5.0)
# Foreign load on the host CPUs a guest holds alone, and each guest's isolation score: the share of the last
# hour its dedicated CPUs carried at most this much foreign load (% of one CPU). See hosts/live/interference.py.
ISOWEB_INTERFERENCE = env_bool("ISOWEB_INTERFERENCE", True)
ISOWEB_FOREIGN_LOAD_THRESHOLD = env_float("ISOWEB_FOREIGN_LOAD_THRESHOLD", 5.0)
# /metrics (OpenMetrics, hosts/metrics.py): answered to a bearer token equal to ISOWEB_METRICS_TOKEN (empty:
# no token accepted) or to clients in ISOWEB_METRICS_NETWORKS (CIDR list, default loopback only).
ISOWEB_METRICS_TOKEN = env_str("ISOWEB_METRICS_TOKEN", "")
ISOWEB_METRICS_NETWORKS = env_list("ISOWEB_METRICS_NETWORKS", "127.0.0.0/8,::1/128")


def _check_networks(name: str, networks: list[str]) -> None:
    import ipaddress

    from django.core.exceptions import ImproperlyConfigured

    for network in networks:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError as exc:
            raise ImproperlyConfigured(f"{name}: {network!r} is not a network in CIDR notation ({exc})") from exc


_check_networks("ISOWEB_METRICS_NETWORKS", ISOWEB_METRICS_NETWORKS)
# A thread stuck inside libvirt cannot be killed; a worker process is replaced after this many tasks, which
# bounds how long the (at most one per hung host) stuck threads it may hold stay around.
CELERY_WORKER_MAX_TASKS_PER_CHILD = env_int("ISOWEB_WORKER_MAX_TASKS_PER_CHILD", 200)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "knox.auth.TokenAuthentication",
    ],
    # Per web-server process (the local-memory cache): the API keeps answering when Redis is down.
    "DEFAULT_THROTTLE_CLASSES": [
        "rest_framework.throttling.AnonRateThrottle",
        "rest_framework.throttling.UserRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env_str("ISOWEB_API_ANON_RATE", "30/minute"),
        "user": env_str("ISOWEB_API_USER_RATE", "1200/minute"),
    },
    "DEFAULT_PERMISSION_CLASSES": ["hosts.api.permissions.CanView"],
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 100,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "isoweb API",
    "DESCRIPTION": "Inventory of libvirt hosts and guests, their CPU pinning and caps.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Several models have a "status"; each choice set gets a name of its own instead of a numbered guess.
    "ENUM_NAME_OVERRIDES": {
        "HostStatusEnum": "hosts.models.inventory.Host.Status",
        "ChangeRequestStatusEnum": "hosts.models.changes.ChangeRequest.Status",
        "ChangeTargetStatusEnum": "hosts.models.changes.ChangeTarget.Status",
        "ApplyJobStatusEnum": "hosts.models.changes.ApplyJob.Status",
        "ChangeRequestScopeEnum": "hosts.models.changes.ChangeRequest.Scope",
        "DriftScopeEnum": "hosts.models.drift.Drift.Scope",
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}
