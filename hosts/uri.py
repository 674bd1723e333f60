"""Validate libvirt host URIs typed by a person before anything opens them.

A libvirt URI can make the client run programs (the ``+ext`` transport, the ``command=`` and ``netcat=``
parameters), so only the transports an operator needs are accepted, with only the parameters that are
safe, and the rest of the URI must be well formed. Each refusal says what was wrong.
"""

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from django.core.exceptions import ValidationError

# transport -> (label, encrypted, needs a remote host name)
TRANSPORTS = {
    "": ("local", True, False),
    "unix": ("unix", True, False),
    "tcp": ("tcp", False, True),
    "tls": ("tls", True, True),
    "ssh": ("ssh", True, True),
}
# Query parameters that only change how libvirt finds files or checks peers, never what it runs.
SAFE_PARAMETERS = {
    "": set(),
    "unix": {"socket", "mode"},
    "tcp": set(),
    "tls": {"pkipath", "no_verify", "tls_priority"},
    "ssh": {
        "keyfile",
        "known_hosts",
        "known_hosts_verify",
        "no_verify",
        "no_tty",
        "sshauth",
        "socket",
        "mode",
    },
}
RUNS_PROGRAMS = {"command", "netcat", "proxy"}
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,62}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}[A-Za-z0-9])?)*$"
)
_USERNAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}$")
_SAFE_VALUE = re.compile(r"^[A-Za-z0-9_./:@+-]*$")


@dataclass(frozen=True)
class HostURI:
    """A libvirt URI that passed validation."""

    uri: str
    transport: str
    encrypted: bool
    hostname: str


def validate_host_uri(uri: str) -> HostURI:
    """Return the parsed URI, or raise ValidationError naming what is wrong with it."""
    text = _checked_text(uri)
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ValidationError(f"This is not a well-formed URI: {exc}.") from exc
    transport = _transport(parts.scheme)
    label, encrypted, remote = TRANSPORTS[transport]
    if parts.path not in ("/system", "/session"):
        raise ValidationError(f"The path must be /system or /session, not '{parts.path or '(none)'}'.")
    if parts.fragment:
        raise ValidationError("A libvirt URI has no '#fragment'.")
    hostname = parts.hostname or ""
    if remote:
        _check_hostname(hostname, transport)
    elif parts.netloc:
        raise ValidationError(
            f"A {label} URI names no host: write qemu{'+' + transport if transport else ''}:///system."
        )
    if port is not None and not 1 <= port <= 65535:
        raise ValidationError(f"Port {port} is out of range.")
    if parts.username is not None and not _USERNAME.match(parts.username):
        raise ValidationError(f"'{parts.username}' is not a valid user name.")
    if parts.password is not None:
        raise ValidationError("Do not put a password in the URI; use keys or certificates.")
    _check_parameters(parts.query, transport)
    return HostURI(uri=text, transport=label, encrypted=encrypted, hostname=hostname or "localhost")


def _checked_text(uri: str) -> str:
    """Return the URI without surrounding blanks, refusing an empty, over-long or control-character one."""
    text = uri.strip()
    if not text:
        raise ValidationError("Enter a libvirt URI such as qemu+tls://host.example.com/system.")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in text):
        raise ValidationError("A libvirt URI cannot contain spaces or control characters.")
    if len(text) > 500:
        raise ValidationError("This URI is too long (at most 500 characters).")
    return text


def _transport(scheme: str) -> str:
    """Return the transport of a ``qemu[+transport]`` scheme, refusing other drivers and unsafe transports."""
    driver, _, transport = scheme.partition("+")
    if driver != "qemu":
        raise ValidationError(f"Unsupported driver '{driver or scheme}': isoweb manages QEMU/KVM hosts (qemu://...).")
    if transport == "ext":
        raise ValidationError("The 'ext' transport runs an arbitrary program and is not allowed.")
    if transport not in TRANSPORTS:
        raise ValidationError(
            f"Unsupported transport '{transport}': use qemu:///system, qemu+unix, qemu+tcp, qemu+tls or qemu+ssh."
        )
    return transport


def _check_hostname(hostname: str, transport: str) -> None:
    """Refuse a remote URI without a host, or whose host is neither an IP address nor a DNS name."""
    if not hostname:
        raise ValidationError(f"A qemu+{transport} URI needs a host name, e.g. qemu+{transport}://host/system.")
    try:
        ipaddress.ip_address(hostname)
    except ValueError:
        if not _HOSTNAME.match(hostname):
            raise ValidationError(f"'{hostname}' is not a valid host name.") from None


def _check_parameters(query: str, transport: str) -> None:
    """Refuse query parameters that run programs or that the transport does not need, and odd values."""
    label = TRANSPORTS[transport][0]
    params = parse_qsl(query, keep_blank_values=True, strict_parsing=False)
    if query and not params:
        raise ValidationError(f"The query '{query}' is not in name=value form.")
    for name, value in params:
        if name in RUNS_PROGRAMS:
            raise ValidationError(f"The '{name}=' parameter makes libvirt run a program and is not allowed.")
        if name not in SAFE_PARAMETERS[transport]:
            allowed = ", ".join(sorted(SAFE_PARAMETERS[transport])) or "none"
            raise ValidationError(f"The '{name}=' parameter is not allowed for {label} URIs (allowed: {allowed}).")
        if not _SAFE_VALUE.match(value):
            raise ValidationError(f"The value of '{name}=' contains characters that are not allowed.")
