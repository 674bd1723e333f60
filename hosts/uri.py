"""Validate libvirt host URIs typed by a person before anything opens them.

A libvirt URI can make the client run programs (the ``+ext`` transport, the ``command=`` and ``netcat=``
parameters), so only the transports an operator needs are accepted, with only the parameters that are
safe, and the rest of the URI must be well formed. Each refusal says what was wrong.

Parameters that switch off checking who is at the other end (``no_verify=1`` on TLS and SSH) are refused
unless an admin allowed them for that host (``Host.allow_unverified``, with a reason). The host a remote URI
names must resolve to an address inside ``ISOWEB_ALLOWED_HOST_NETWORKS`` when that list is set, and never to a
link-local (cloud metadata) address unless the list names it.
"""

import ipaddress
import re
import socket
import threading
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, ValidationError

# transport -> (label, encrypted, needs a remote host name)
TRANSPORTS = {
    "": ("local", True, False),
    "unix": ("unix", True, False),
    "tcp": ("tcp", False, True),
    "tls": ("tls", True, True),
    "ssh": ("ssh", True, True),
}
# Transports refused with a reason of their own.
REFUSED_TRANSPORTS = {
    "ext": "The 'ext' transport runs an arbitrary program and is not allowed.",
    # Measured here (tests/test_transports.py's history): with the libvirt 9.0 client, qemu+libssh crashed the
    # process (SIGSEGV in libvirt's client I/O loop) in about one run of ten under concurrent calls on one
    # connection, which isoweb's workers make; qemu+ssh (OpenSSH) ran the same work without fault.
    "libssh": "qemu+libssh is not supported: libvirt 9.0's built-in SSH client crashed worker processes under "
    "isoweb's concurrent calls. Use qemu+ssh (OpenSSH).",
}
# Query parameters that only change how libvirt finds files or checks peers, never what it runs.
SAFE_PARAMETERS = {
    "": set(),
    "unix": {"socket", "mode"},
    "tcp": set(),
    "tls": {"pkipath", "no_verify", "tls_priority"},
    # OpenSSH checks the host against the worker user's own known_hosts files: libvirt passes it no known_hosts=
    # (those parameters only exist for libssh and libssh2, so they are refused rather than silently ignored).
    "ssh": {"keyfile", "no_verify", "no_tty", "socket", "mode"},
}
LIBSSH_ONLY = {"known_hosts", "known_hosts_verify", "sshauth"}
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
    unverified: tuple[str, ...] = ()  # the parameters that switch off checking the peer, e.g. ("no_verify=1",)


def validate_host_uri(uri: str, *, allow_unverified: bool = False) -> HostURI:
    """Return the parsed URI, or raise ValidationError naming what is wrong with it.

    ``allow_unverified`` is the host's admin override (``Host.allow_unverified``) for parameters that switch off
    checking the peer; without it they are refused. A remote host's address is checked against
    ``ISOWEB_ALLOWED_HOST_NETWORKS`` (see check_host_address).
    """
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
    unverified = _check_parameters(parts.query, transport)
    if unverified and not allow_unverified:
        raise ValidationError(
            f"{' and '.join(unverified)} turns off checking that the host is the one you mean (anyone on the "
            "path could pose as it). Remove it, or an admin allows unverified connections for this host with a reason."
        )
    if remote:
        check_host_address(hostname)
    return HostURI(
        uri=text, transport=label, encrypted=encrypted, hostname=hostname or "localhost", unverified=unverified
    )


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
    if transport in REFUSED_TRANSPORTS:
        raise ValidationError(REFUSED_TRANSPORTS[transport])
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


def _check_parameters(query: str, transport: str) -> tuple[str, ...]:
    """Refuse query parameters that run programs or that the transport does not need, and odd values.

    Returns the parameters that switch off checking the peer (for the caller to refuse or allow).
    """
    label = TRANSPORTS[transport][0]
    params = parse_qsl(query, keep_blank_values=True, strict_parsing=False)
    if query and not params:
        raise ValidationError(f"The query '{query}' is not in name=value form.")
    unverified: list[str] = []
    for name, value in params:
        if name in RUNS_PROGRAMS:
            raise ValidationError(f"The '{name}=' parameter makes libvirt run a program and is not allowed.")
        if transport == "ssh" and name in LIBSSH_ONLY:
            raise ValidationError(
                f"The '{name}=' parameter is not used by qemu+ssh: libvirt runs OpenSSH, which checks the host "
                "against the known_hosts files of the user the workers run as (~/.ssh/known_hosts)."
            )
        if name not in SAFE_PARAMETERS[transport]:
            allowed = ", ".join(sorted(SAFE_PARAMETERS[transport])) or "none"
            raise ValidationError(f"The '{name}=' parameter is not allowed for {label} URIs (allowed: {allowed}).")
        if not _SAFE_VALUE.match(value):
            raise ValidationError(f"The value of '{name}=' contains characters that are not allowed.")
        if _disables_verification(name, value):
            unverified.append(f"{name}={value}")
    return tuple(unverified)


def _disables_verification(name: str, value: str) -> bool:
    """Whether a parameter switches off checking the peer's certificate or host key.

    ``no_verify`` with any value but 0: TLS then accepts any certificate, ssh runs with StrictHostKeyChecking=no.
    """
    return name == "no_verify" and value.strip() not in ("", "0")


# Link-local addresses: where clouds answer metadata requests (169.254.169.254, fe80::...). Refused unless listed.
LINK_LOCAL = (ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fe80::/10"))
RESOLVE_SECONDS = 2.0
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def allowed_networks() -> list[IPNetwork]:
    """Return ``ISOWEB_ALLOWED_HOST_NETWORKS`` as networks (empty: any address but link-local)."""
    networks: list[IPNetwork] = []
    for entry in getattr(settings, "ISOWEB_ALLOWED_HOST_NETWORKS", []):
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError as exc:
            raise ImproperlyConfigured(f"ISOWEB_ALLOWED_HOST_NETWORKS: '{entry}' is not a network ({exc})") from exc
    return networks


def _plain(address: IPAddress) -> IPAddress:
    """The IPv4 address behind an IPv4-mapped IPv6 one (::ffff:a.b.c.d), else the address itself."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def resolve(hostname: str, timeout: float = RESOLVE_SECONDS) -> list[IPAddress] | None:
    """Return every address ``hostname`` resolves to, or None if it does not resolve within ``timeout`` s.

    The resolver has no timeout of its own, so it runs on a thread of its own that is left behind if it hangs.
    """
    try:
        return [_plain(ipaddress.ip_address(hostname))]
    except ValueError:
        pass
    found: list[list[IPAddress]] = []

    def lookup() -> None:
        try:
            infos = socket.getaddrinfo(hostname, None, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            return
        found.append([_plain(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])) for info in infos])

    thread = threading.Thread(target=lookup, name=f"resolve {hostname}", daemon=True)
    thread.start()
    thread.join(timeout)
    return found[0] if found and found[0] else None


def check_host_address(hostname: str) -> None:
    """Refuse a host whose addresses are outside ``ISOWEB_ALLOWED_HOST_NETWORKS`` or link-local and not listed.

    With the list empty, any address is allowed except link-local ones, and a name that does not resolve is
    accepted (the host will show as down). With the list set, every address the name resolves to must be in it,
    and a name that does not resolve is refused because it cannot be checked.
    """
    networks = allowed_networks()
    listing = ", ".join(str(net) for net in networks)
    addresses = resolve(hostname)
    if addresses is None:
        if networks:
            raise ValidationError(
                f"'{hostname}' does not resolve, so it cannot be checked against ISOWEB_ALLOWED_HOST_NETWORKS "
                f"({listing})."
            )
        return
    for address in addresses:
        listed = any(address in net for net in networks)
        if not listed and any(address in net for net in LINK_LOCAL):
            raise ValidationError(
                f"'{hostname}' is {address}, a link-local address (where clouds serve instance metadata): refused "
                "unless ISOWEB_ALLOWED_HOST_NETWORKS lists it."
            )
        if networks and not listed:
            raise ValidationError(
                f"'{hostname}' is {address}, outside ISOWEB_ALLOWED_HOST_NETWORKS ({listing}): isoweb may not "
                "connect there."
            )
