"""Talk to libvirt: the only module in isoweb that imports ``libvirt``.

It keeps one connection per host URI per process (with keepalive, so a dead host is noticed within
seconds), hands out frozen dataclasses rather than libvirt objects, counts its round trips, and turns
libvirt's errors into :class:`TransientVirtError` (try again later: host unreachable, connection lost) or
:class:`PermanentVirtError` (retrying cannot help: no such guest, unsupported, invalid) with a message in
plain words.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import threading
import time
import xml.etree.ElementTree as ET  # for the Element type only; parsing goes through defusedxml
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import libvirt
from defusedxml.ElementTree import fromstring as parse_xml

from hosts import threads
from hosts.cpulist import cpumap_to_cpus, format_cpulist, parse_cpulist
from hosts.profile_schema import SCHED_NAMES

log = logging.getLogger(__name__)
T = TypeVar("T")

# Getters report these; one definition for the whole project lives beside the profile validator.
SCHED_PARAMETERS = SCHED_NAMES

DOMAIN_STATES = {
    libvirt.VIR_DOMAIN_NOSTATE: "nostate",
    libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_BLOCKED: "blocked",
    libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "shutdown",
    libvirt.VIR_DOMAIN_SHUTOFF: "shutoff",
    libvirt.VIR_DOMAIN_CRASHED: "crashed",
    libvirt.VIR_DOMAIN_PMSUSPENDED: "pmsuspended",
}
VCPU_STATES = {
    libvirt.VIR_VCPU_OFFLINE: "offline",
    libvirt.VIR_VCPU_RUNNING: "running",
    libvirt.VIR_VCPU_BLOCKED: "blocked",
}

# libvirt error codes, with what they mean to an operator.
_PLAIN_WORDS = {
    libvirt.VIR_ERR_SYSTEM_ERROR: "the host cannot be reached",
    libvirt.VIR_ERR_NO_CONNECT: "the host cannot be reached",
    libvirt.VIR_ERR_RPC: "the connection to the host failed",
    libvirt.VIR_ERR_AUTH_FAILED: "authentication to the host failed",
    libvirt.VIR_ERR_NO_DOMAIN: "no such guest on this host",
    libvirt.VIR_ERR_OPERATION_INVALID: "not possible in the guest's current state",
    libvirt.VIR_ERR_INVALID_ARG: "libvirt refused an argument",
    libvirt.VIR_ERR_CONFIG_UNSUPPORTED: "the host's libvirt does not support this configuration",
    libvirt.VIR_ERR_NO_SUPPORT: "the host's hypervisor does not support this",
    libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED: "the host's libvirt does not support this option",
    libvirt.VIR_ERR_OPERATION_UNSUPPORTED: "the host's libvirt does not support this operation",
    libvirt.VIR_ERR_OPERATION_TIMEOUT: "the host did not answer in time",
}
_TRANSIENT_CODES = {
    libvirt.VIR_ERR_SYSTEM_ERROR,
    libvirt.VIR_ERR_NO_CONNECT,
    libvirt.VIR_ERR_INVALID_CONN,
    libvirt.VIR_ERR_RPC,
    libvirt.VIR_ERR_OPERATION_TIMEOUT,
    libvirt.VIR_ERR_AGENT_UNRESPONSIVE,
}


class VirtError(Exception):
    """A libvirt failure, told in plain words; ``permanent`` says whether retrying can help."""

    permanent = True

    def __init__(self, message: str, *, code: int | None = None, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.detail = detail


class TransientVirtError(VirtError):
    """The host is unreachable or the connection dropped: retry later."""

    permanent = False


class PermanentVirtError(VirtError):
    """The request cannot succeed as asked (no such guest, invalid, unsupported)."""

    permanent = True


def translate_error(exc: libvirt.libvirtError, uri: str = "") -> VirtError:
    """Turn a libvirtError into a project error whose message an operator can act on."""
    code = exc.get_error_code() or 0
    detail = (exc.get_error_message() or str(exc)).strip()
    lost = code == libvirt.VIR_ERR_INTERNAL_ERROR and (
        "client socket is closed" in detail or "connection" in detail.lower()
    )
    words = "the connection to the host was lost" if lost else _PLAIN_WORDS.get(code, "libvirt failed")
    where = f" ({uri})" if uri else ""
    message = f"{words}{where}: {detail}" if detail else f"{words}{where}"
    cls = TransientVirtError if lost or code in _TRANSIENT_CODES else PermanentVirtError
    return cls(message, code=code, detail=detail)


# --- connections -----------------------------------------------------------------------------------

_lock = threading.Lock()
_connections: dict[str, libvirt.virConnect] = {}


@dataclass(frozen=True)
class _Seen:
    """What the last inventory read of a connection saw: an apply that follows in the same process uses it
    instead of asking again (the CPU map, and a handle per guest instead of a lookup round trip each)."""

    conn: libvirt.virConnect
    ncpus: int
    online: frozenset[int]
    domains: dict[str, libvirt.virDomain]
    at: float  # time.monotonic() of the read


_seen: dict[str, _Seen] = {}  # tied to the connection object: a new connection starts with nothing seen
SEEN_FRESH_SECONDS = 10.0  # older than this, a session asks again
# Calls kept in flight at once on one connection; libvirtd's max_client_requests defaults to 5.
IN_FLIGHT_PER_CONNECTION = 4
_event_loop_pid: int | None = None


def _silence_default_error_printer() -> None:
    # libvirt prints every error to stderr by default; we raise them as exceptions instead.
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)


def _run_event_loop() -> None:
    while True:
        libvirt.virEventRunDefaultImpl()


def _ensure_event_loop() -> None:
    """Start libvirt's event loop once per process: keepalive and close callbacks need it.

    Celery's prefork workers fork before any task runs, so each child starts its own loop here.
    """
    global _event_loop_pid
    pid = os.getpid()
    if _event_loop_pid == pid:
        return
    _connections.clear()  # inherited across fork: unusable in this process
    _seen.clear()
    _silence_default_error_printer()
    libvirt.virEventRegisterDefaultImpl()
    threading.Thread(target=_run_event_loop, name="libvirt-events", daemon=True).start()
    _event_loop_pid = pid


def _on_close(conn: libvirt.virConnect, reason: int, uri: str) -> None:
    with _lock:
        if _connections.get(uri) is conn:
            del _connections[uri]
    log.info("libvirt connection to %s closed (reason %s)", uri, reason)


def connect(uri: str) -> libvirt.virConnect:
    """Return this process's open connection to ``uri``, opening it if needed."""
    with _lock:
        _ensure_event_loop()
        conn = _connections.get(uri)
        if conn is not None:
            try:
                if conn.isAlive():
                    return conn
            except libvirt.libvirtError:
                pass
            _connections.pop(uri, None)
        try:
            conn = libvirt.open(uri)
        except libvirt.libvirtError as exc:
            raise translate_error(exc, uri) from exc
        try:
            from django.conf import settings

            conn.setKeepAlive(settings.ISOWEB_LIBVIRT_KEEPALIVE_INTERVAL, settings.ISOWEB_LIBVIRT_KEEPALIVE_COUNT)
            conn.registerCloseCallback(_on_close, uri)
        except libvirt.libvirtError as exc:
            # Local (qemu:///system) connections have no keepalive; that is fine.
            log.debug("no keepalive on %s: %s", uri, exc)
        _connections[uri] = conn
        return conn


def disconnect(uri: str) -> None:
    """Close this process's connection to ``uri``, if any."""
    with _lock:
        conn = _connections.pop(uri, None)
    if conn is not None:
        with contextlib.suppress(libvirt.libvirtError):
            conn.unregisterCloseCallback()
        with contextlib.suppress(libvirt.libvirtError):
            conn.close()


class RoundTrips:
    """Count the libvirt RPCs made for one piece of work."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.count = 0
        self._lock = threading.Lock()

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        with self._lock:
            self.count += 1
        try:
            return fn(*args)
        except libvirt.libvirtError as exc:
            raise translate_error(exc, self.uri) from exc


# --- typed results ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class HostCPU:
    """One host CPU as libvirt's capabilities describe it."""

    cpu_id: int
    socket_id: int | None
    die_id: int | None
    core_id: int | None
    siblings: str
    online: bool


@dataclass(frozen=True)
class NumaCell:
    """One NUMA cell: its memory and CPUs."""

    cell_id: int
    memory_kib: int | None
    cpus: tuple[HostCPU, ...]


@dataclass(frozen=True)
class HostFacts:
    """What a host says about itself."""

    hostname: str
    libvirt_version: str
    hypervisor_version: str
    cpu_model: str
    cells: tuple[NumaCell, ...]
    online: frozenset[int] = frozenset()  # the host CPUs online now (a light read has no cells)

    @property
    def cpu_ids(self) -> frozenset[int]:
        return frozenset(cpu.cpu_id for cell in self.cells for cpu in cell.cpus)


@dataclass(frozen=True)
class Tuning:
    """A guest's CPU tuning as libvirt's getters report it (live or persistent config)."""

    vcpupin: dict[int, str]
    emulatorpin: str
    iothreadpin: dict[int, str]
    sched: dict[str, int]

    def as_json(self) -> dict[str, Any]:
        return {
            "vcpupin": {str(k): v for k, v in sorted(self.vcpupin.items())},
            "emulatorpin": self.emulatorpin,
            "iothreadpin": {str(k): v for k, v in sorted(self.iothreadpin.items())},
            "sched": dict(self.sched),
        }


@dataclass(frozen=True)
class DomainFacts:
    """A guest: its identity, state, vCPUs and tuning, and its vCPU threads' real affinity."""

    uuid: str
    name: str
    state: str
    persistent: bool
    vcpus_current: int
    vcpus_max: int
    placement: str
    iothread_ids: tuple[int, ...]
    live: Tuning | None
    config: Tuning | None
    affinity: dict[int, str] | None = field(default_factory=dict)  # None: not read this time
    vcpu_states: dict[int, str] = field(default_factory=dict)
    # The persistent definition with its secrets, kept only when asked for (a change's snapshot, for an exact
    # restore); never stored in the inventory.
    config_xml: str | None = field(default=None, repr=False)

    def snapshot_json(self) -> dict[str, Any]:
        """The guest as a change request stores it before writing (what an undo puts back) or after."""
        out = {
            "state": self.state,
            "live": self.live.as_json() if self.live else None,
            "config": self.config.as_json() if self.config else None,
            "config_xml": self.config_xml,
        }
        if self.affinity is not None:
            out["affinity"] = {str(k): v for k, v in sorted(self.affinity.items())}
        return out


@dataclass(frozen=True)
class Inventory:
    """Everything one sync learns about a host, and what it cost."""

    host: HostFacts
    domains: tuple[DomainFacts, ...]
    round_trips: int
    seconds: float
    # A light read (before re-planning a change) skips the host's identity and the guests' vCPU affinity, and
    # running guests' config unless asked for.
    complete: bool = True


def _version(number: int) -> str:
    return f"{number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}"


def _int_attr(element: ET.Element, name: str) -> int | None:
    value = element.get(name)
    return int(value) if value is not None and value.lstrip("-").isdigit() else None


def parse_capabilities(xml: str, online: frozenset[int]) -> HostFacts:
    """Build host facts from ``getCapabilities()`` XML and the online CPU set."""
    root = parse_xml(xml)
    model = root.findtext("host/cpu/model") or root.findtext("host/cpu/arch") or ""
    cells: list[NumaCell] = []
    for cell in root.iterfind("host/topology/cells/cell"):
        memory = cell.find("memory")
        cpus = tuple(
            HostCPU(
                cpu_id=int(cpu.get("id", "0")),
                socket_id=_int_attr(cpu, "socket_id"),
                die_id=_int_attr(cpu, "die_id"),
                core_id=_int_attr(cpu, "core_id"),
                siblings=cpu.get("siblings") or cpu.get("id", ""),
                online=int(cpu.get("id", "0")) in online,
            )
            for cpu in cell.iterfind("cpus/cpu")
        )
        cells.append(
            NumaCell(
                cell_id=int(cell.get("id", "0")),
                memory_kib=int(memory.text) if memory is not None and memory.text else None,
                cpus=cpus,
            )
        )
    if not cells:
        # No NUMA topology reported: one cell holding every online CPU.
        cells.append(
            NumaCell(
                cell_id=0,
                memory_kib=None,
                cpus=tuple(HostCPU(c, None, None, None, str(c), True) for c in sorted(online)),
            )
        )
    return HostFacts(hostname="", libvirt_version="", hypervisor_version="", cpu_model=model, cells=tuple(cells))


def tuning_from_xml(xml: str, sched: dict[str, int], host_cpus: frozenset[int]) -> tuple[Tuning, dict[str, Any]]:
    """Return a guest's tuning from its domain XML, with the defaults libvirt's getters apply.

    libvirt's ``vcpupin``/``emulatorpin``/``iothreadinfo`` getters fall back, for a thread with no pin of its
    own, to the ``<vcpu cpuset=...>`` mask and then to every online host CPU; the same chain is applied
    here so one XML read answers what three getter calls would. Also returns the XML's vCPU facts.
    """
    root = parse_xml(xml)
    vcpu = root.find("vcpu")
    vcpus_max = int(vcpu.text) if vcpu is not None and vcpu.text else 1
    vcpus_current = int(vcpu.get("current", vcpus_max)) if vcpu is not None else vcpus_max
    placement = (vcpu.get("placement") if vcpu is not None else None) or "static"
    cpuset = vcpu.get("cpuset") if vcpu is not None else None
    default = parse_cpulist(cpuset) & host_cpus if cpuset else host_cpus
    default_text = format_cpulist(default)

    iothread_ids = [int(e.get("id", "0")) for e in root.iterfind("iothreadids/iothread")]
    if not iothread_ids:
        count = root.findtext("iothreads")
        iothread_ids = list(range(1, int(count) + 1)) if count and count.isdigit() else []

    def pinned(path: str, key: str) -> dict[int, str]:
        return {
            int(e.get(key, "0")): format_cpulist(parse_cpulist(e.get("cpuset", "")) & host_cpus)
            for e in root.iterfind(path)
            if e.get("cpuset")
        }

    vcpupins = pinned("cputune/vcpupin", "vcpu")
    iothreadpins = pinned("cputune/iothreadpin", "iothread")
    emulator = root.find("cputune/emulatorpin")
    tuning = Tuning(
        vcpupin={n: vcpupins.get(n, default_text) for n in range(vcpus_max)},
        emulatorpin=(
            format_cpulist(parse_cpulist(emulator.get("cpuset", "")) & host_cpus)
            if emulator is not None and emulator.get("cpuset")
            else default_text
        ),
        iothreadpin={i: iothreadpins.get(i, default_text) for i in iothread_ids},
        sched={k: int(sched[k]) for k in SCHED_PARAMETERS if k in sched},
    )
    facts = {
        "vcpus_max": vcpus_max,
        "vcpus_current": vcpus_current,
        "placement": placement,
        "iothread_ids": tuple(iothread_ids),
    }
    return tuning, facts


def _domain_facts(
    rt: RoundTrips,
    dom: libvirt.virDomain,
    state_code: int,
    host_cpus: frozenset[int],
    *,
    with_config: bool = True,
    with_affinity: bool = True,
    keep_config_xml: bool = False,
) -> DomainFacts:
    """Read one guest.

    ``with_config=False`` skips the persistent config (a live-only change needs none); ``with_affinity=False``
    skips the vCPU threads' affinity (``affinity`` is then None), which only a vCPU pin can change.
    ``keep_config_xml`` reads the config with its secrets and keeps that XML (for a snapshot).
    """
    active = state_code not in (libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_CRASHED)
    persistent = True
    config: Tuning | None = None
    config_xml: str | None = None
    facts: dict[str, Any] = {}
    if with_config:
        try:
            config_sched = rt.call(dom.schedulerParametersFlags, libvirt.VIR_DOMAIN_AFFECT_CONFIG)
            flags = libvirt.VIR_DOMAIN_XML_INACTIVE | (libvirt.VIR_DOMAIN_XML_SECURE if keep_config_xml else 0)
            xml = rt.call(dom.XMLDesc, flags)
            config, facts = tuning_from_xml(xml, config_sched, host_cpus)
            config_xml = xml if keep_config_xml else None
        except PermanentVirtError as exc:
            if exc.code != libvirt.VIR_ERR_OPERATION_INVALID:
                raise
            persistent = False  # a transient guest has no persistent config
    live: Tuning | None = None
    affinity: dict[int, str] | None = {}
    vcpu_states: dict[int, str] = {}
    if active:
        live_sched = rt.call(dom.schedulerParametersFlags, libvirt.VIR_DOMAIN_AFFECT_LIVE)
        live, facts = tuning_from_xml(rt.call(dom.XMLDesc, 0), live_sched, host_cpus)
        if with_affinity:
            info, cpumaps = rt.call(dom.vcpus)
            affinity = {
                n: format_cpulist(cpumap_to_cpus(cpumap)) for (n, *_rest), cpumap in zip(info, cpumaps, strict=True)
            }
            vcpu_states = {n: VCPU_STATES.get(vstate, str(vstate)) for n, vstate, *_rest in info}
        else:
            affinity = None
    return DomainFacts(
        uuid=dom.UUIDString(),
        name=dom.name(),
        state=DOMAIN_STATES.get(state_code, "nostate"),
        persistent=persistent,
        vcpus_current=facts.get("vcpus_current", 0),
        vcpus_max=facts.get("vcpus_max", 0),
        placement=facts.get("placement", "static"),
        iothread_ids=facts.get("iothread_ids", ()),
        live=live,
        config=config,
        affinity=affinity,
        vcpu_states=vcpu_states,
        config_xml=config_xml,
    )


def fetch_inventory(uri: str, *, light: bool = False, keep_config: bool = False) -> Inventory:
    """Read a host's facts, topology and every guest with its tuning, in as few round trips as libvirt allows.

    Per host: capabilities, CPU map, versions, hostname, and one bulk state call listing every guest.
    Per guest: its config XML and scheduler parameters, and for a running guest its live XML, live scheduler
    parameters and the vCPU threads' real affinity. A guest that vanishes mid-read is left out.

    ``light=True`` reads a running guest's live XML and scheduler parameters only (what re-planning a live
    change needs, and what its snapshot holds); its config and affinity are then None. Of the host it reads
    only which CPUs are online: name, versions and topology are left blank, and the caller keeps what it
    knew. ``keep_config=True`` also reads every guest's config, with its secrets, and keeps its XML (what
    re-planning and snapshotting a change of the persistent config needs).
    """
    started = time.perf_counter()
    conn = connect(uri)
    rt = RoundTrips(uri)
    pool = threads.call_pool()
    try:
        # The host-wide questions go out together; a light read keeps the host's identity it already knows.
        asked = {
            "cpumap": pool.submit(rt.call, conn.getCPUMap),
            "records": pool.submit(rt.call, conn.getAllDomainStats, libvirt.VIR_DOMAIN_STATS_STATE, 0),
        }
        if not light:
            asked["capabilities"] = pool.submit(rt.call, conn.getCapabilities)
            asked["hostname"] = pool.submit(rt.call, conn.getHostname)
            asked["libvirt"] = pool.submit(rt.call, conn.getLibVersion)
            asked["hypervisor"] = pool.submit(rt.call, conn.getVersion)
        ncpus, cpumap, _online_count = asked["cpumap"].result()
        online = cpumap_to_cpus(cpumap)
        if light:
            host = HostFacts(hostname="", libvirt_version="", hypervisor_version="", cpu_model="", cells=())
        else:
            topology = parse_capabilities(asked["capabilities"].result(), online)
            host = HostFacts(
                hostname=asked["hostname"].result(),
                libvirt_version=_version(asked["libvirt"].result()),
                hypervisor_version=_version(asked["hypervisor"].result()),
                cpu_model=topology.cpu_model,
                cells=topology.cells,
            )
        host = dataclasses.replace(host, online=online)
        records = asked["records"].result()
        with _lock:
            _seen[uri] = _Seen(
                conn, ncpus, online, {dom.UUIDString(): dom for dom, _stats in records}, time.monotonic()
            )

        def read(record: tuple[libvirt.virDomain, dict[str, Any]]) -> DomainFacts | None:
            dom, stats = record
            try:
                state = int(stats.get("state.state", 0))
                running = state not in (libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_CRASHED)
                return _domain_facts(
                    rt,
                    dom,
                    state,
                    online,
                    with_config=keep_config or not (light and running),
                    with_affinity=not light,
                    keep_config_xml=keep_config,
                )
            except PermanentVirtError as exc:
                if exc.code != libvirt.VIR_ERR_NO_DOMAIN:
                    raise
                log.info("guest %s vanished during sync of %s", dom.name(), uri)
                return None

        # A few guests' reads in flight at once on the one connection (libvirtd's default allows 5 per client).
        read_all = threads.bounded_map(read, records, IN_FLIGHT_PER_CONNECTION)
        domains = [facts for facts in read_all if facts is not None]
    except TransientVirtError:
        disconnect(uri)
        raise
    return Inventory(
        host=host,
        domains=tuple(sorted(domains, key=lambda d: d.name)),
        round_trips=rt.count,
        seconds=time.perf_counter() - started,
        complete=not light,
    )


# --- reading, applying and restoring a guest's tuning (the apply engine) ------------------------

_SCOPE_FLAGS = {"live": libvirt.VIR_DOMAIN_AFFECT_LIVE, "config": libvirt.VIR_DOMAIN_AFFECT_CONFIG}
# On cgroup v1 a child's quota may not exceed its parent's, so the order in which caps are written matters:
# loosening must raise the guest-wide (parent) cap first, tightening must lower the per-thread caps first.
_PARENT_SCHED = ("global_period", "global_quota")


def _cpumap(cpulist: str, ncpus: int) -> tuple[bool, ...]:
    cpus = parse_cpulist(cpulist)
    return tuple(i in cpus for i in range(ncpus))


def _set_sched(rt: RoundTrips, dom: libvirt.virDomain, sched: dict[str, int], flag: int) -> None:
    if not sched:
        return
    parent = {k: v for k, v in sched.items() if k in _PARENT_SCHED}
    children = {k: v for k, v in sched.items() if k not in _PARENT_SCHED}
    try:
        rt.call(dom.setSchedulerParametersFlags, {**parent, **children}, flag)
    except PermanentVirtError:
        if not parent or not children:
            raise
        # The other order: per-thread caps first, then the guest-wide one.
        rt.call(dom.setSchedulerParametersFlags, children, flag)
        rt.call(dom.setSchedulerParametersFlags, parent, flag)


class HostSession:
    """One host's connection for a batch of guest changes: the CPU map and guest handles are read once (or
    taken from the inventory read this process just made of the host).

    Safe to use from several threads at once (libvirt multiplexes calls on one connection), which is how
    the apply engine keeps a few guests of one host in flight.
    """

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.conn = connect(uri)
        self.rt = RoundTrips(uri)
        with _lock:
            seen = _seen.get(uri)
        fresh = seen is not None and seen.conn is self.conn and time.monotonic() - seen.at < SEEN_FRESH_SECONDS
        self._seen = seen if fresh else None
        if self._seen is not None:
            self.ncpus, self.online = self._seen.ncpus, self._seen.online
        else:
            self.ncpus, cpumap, _online = self.rt.call(self.conn.getCPUMap)
            self.online = cpumap_to_cpus(cpumap)
        self._domains: dict[str, libvirt.virDomain] = {}
        self._lock = threading.Lock()

    def domain(self, uuid: str) -> libvirt.virDomain:
        with self._lock:
            dom = self._domains.get(uuid)
        if dom is None and self._seen is not None:
            dom = self._seen.domains.get(uuid)
        if dom is None:
            dom = self.rt.call(self.conn.lookupByUUIDString, uuid)
            with self._lock:
                self._domains[uuid] = dom
        return dom

    def read_guest(
        self,
        uuid: str,
        scopes: tuple[str, ...] = ("live", "config"),
        *,
        state: int | None = None,
        with_affinity: bool = True,
    ) -> DomainFacts:
        """Read what a change in ``scopes`` touches: live tuning and real affinity, config tuning and XML.

        A caller that knows the guest's state (it read it a moment ago) passes it and saves a round trip;
        if the guest stopped meanwhile, the live reads fail and say so.
        """
        dom = self.domain(uuid)
        if state is None:
            state, _reason = self.rt.call(dom.state)
        config = "config" in scopes
        facts = _domain_facts(
            self.rt, dom, state, self.online, with_config=config, with_affinity=with_affinity, keep_config_xml=config
        )
        return facts

    def apply(self, uuid: str, desired: dict[str, Any], scopes: tuple[str, ...]) -> None:
        """Write the desired pins and caps to a guest, live and/or in its config.

        ``desired`` has the inventory's shape and holds only what should change. Each scope is written
        separately: the binding's scheduler setter reads back with the same flags, which rejects LIVE|CONFIG.
        """
        dom = self.domain(uuid)
        for scope in scopes:
            flag = _SCOPE_FLAGS[scope]
            for vcpu, cpulist in sorted((desired.get("vcpupin") or {}).items(), key=lambda kv: int(kv[0])):
                self.rt.call(dom.pinVcpuFlags, int(vcpu), _cpumap(cpulist, self.ncpus), flag)
            if desired.get("emulatorpin"):
                self.rt.call(dom.pinEmulator, _cpumap(desired["emulatorpin"], self.ncpus), flag)
            for iothread, cpulist in sorted((desired.get("iothreadpin") or {}).items(), key=lambda kv: int(kv[0])):
                self.rt.call(dom.pinIOThread, int(iothread), _cpumap(cpulist, self.ncpus), flag)
            _set_sched(self.rt, dom, {k: int(v) for k, v in (desired.get("sched") or {}).items()}, flag)

    def restore(self, uuid: str, before: dict[str, Any], scopes: tuple[str, ...]) -> None:
        """Put a guest back as a snapshot found it.

        Live tuning is written back value by value (scheduler parameters in whichever order the kernel
        accepts); the persistent config is restored exactly by redefining the snapshot's XML.
        """
        if "live" in scopes and before.get("live"):
            live = before["live"]
            self.apply(uuid, {**live, "sched": live.get("sched") or {}}, ("live",))
        if "config" in scopes and before.get("config_xml"):
            self.rt.call(self.conn.defineXML, before["config_xml"])


# --- guest lifecycle (used by the demo/test fleet) ------------------------------------------------


def define_and_start(uri: str, xml: str, *, start: bool = True) -> str:
    """Define a persistent guest from XML (replacing a same-named one's definition) and start it.

    Returns the guest's UUID.
    """
    conn = connect(uri)
    rt = RoundTrips(uri)
    dom = rt.call(conn.defineXML, xml)
    if start and not rt.call(dom.isActive):
        rt.call(dom.create)
    return dom.UUIDString()


def start_if_stopped(uri: str, name: str) -> None:
    """Start a defined guest unless it already runs."""
    conn = connect(uri)
    rt = RoundTrips(uri)
    dom = rt.call(conn.lookupByName, name)
    if not rt.call(dom.isActive):
        rt.call(dom.create)


def destroy_and_undefine(uri: str, name: str) -> None:
    """Stop a guest if it runs and remove its definition; a guest already gone is not an error."""
    conn = connect(uri)
    rt = RoundTrips(uri)
    try:
        dom = rt.call(conn.lookupByName, name)
        if rt.call(dom.isActive):
            rt.call(dom.destroy)
        rt.call(dom.undefine)
    except PermanentVirtError as exc:
        if exc.code != libvirt.VIR_ERR_NO_DOMAIN:
            raise


def list_domain_names(uri: str) -> list[str]:
    """Return the names of every guest defined or running on a host."""
    conn = connect(uri)
    rt = RoundTrips(uri)
    return sorted(dom.name() for dom in rt.call(conn.listAllDomains, 0))


# --- stats (collector) -----------------------------------------------------------------------------

_CPU_STATS_FLAGS = libvirt.VIR_DOMAIN_STATS_CPU_TOTAL | libvirt.VIR_DOMAIN_STATS_VCPU
# Only active guests: a shut-off guest reports libvirtd's own CPU time in libvirt 9.0.
_ACTIVE_ONLY = libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE


@dataclass(frozen=True)
class GuestCPUCounters:
    """One running guest's cumulative CPU counters in nanoseconds, as libvirt's bulk stats report them.

    ``cpu_time`` covers every thread of the QEMU process (vCPUs, emulator, I/O threads); ``vcpu_time`` and
    ``vcpu_delay`` (run-queue wait, i.e. steal) are keyed by vCPU number, which may be sparse after hotplug.
    """

    uuid: str
    name: str
    cpu_time: int
    vcpu_time: dict[int, int]
    vcpu_delay: dict[int, int]


@dataclass(frozen=True)
class HostCPUCounters:
    """One host CPU's cumulative time in nanoseconds: busy (kernel + user) and total (busy + idle + iowait)."""

    cpu_id: int
    busy: int
    total: int


@dataclass(frozen=True)
class StatsSample:
    """One tick's counters for a host, stamped with the collector's monotonic and wall clocks.

    ``mono`` is the midpoint of the bulk guest call, so rates are computed over the interval libvirt
    really sampled, immune to wall-clock steps; ``wall`` places the sample on the chart's time axis.
    """

    mono: float
    wall: float
    guests: tuple[GuestCPUCounters, ...]
    host_cpus: tuple[HostCPUCounters, ...]
    round_trips: int


def _guest_counters(dom: libvirt.virDomain, stats: dict[str, Any]) -> GuestCPUCounters:
    vcpu_time: dict[int, int] = {}
    vcpu_delay: dict[int, int] = {}
    for key, value in stats.items():
        if not key.startswith("vcpu."):
            continue
        parts = key.split(".")
        if len(parts) != 3 or not parts[1].isdigit():
            continue  # vcpu.current, vcpu.maximum and KVM's per-vCPU "*.sum" counters
        if parts[2] == "time":
            vcpu_time[int(parts[1])] = int(value)
        elif parts[2] == "delay":
            vcpu_delay[int(parts[1])] = int(value)
    return GuestCPUCounters(
        uuid=dom.UUIDString(),
        name=dom.name(),
        cpu_time=int(stats.get("cpu.time", 0)),
        vcpu_time=vcpu_time,
        vcpu_delay=vcpu_delay,
    )


def _host_cpu_counters(rt: RoundTrips, conn: libvirt.virConnect, cpu_ids: tuple[int, ...]) -> list[HostCPUCounters]:
    # VIR_NODE_CPU_STATS_ALL_CPUS (-1) returns one sum over every CPU, not one entry per CPU, so painting
    # the CPU map needs one call per CPU (each well under a millisecond).
    result: list[HostCPUCounters] = []
    for cpu_id in cpu_ids:
        raw = rt.call(conn.getCPUStats, cpu_id)
        busy = int(raw.get("kernel", 0)) + int(raw.get("user", 0))
        result.append(HostCPUCounters(cpu_id, busy, busy + int(raw.get("idle", 0)) + int(raw.get("iowait", 0))))
    return result


def fetch_cpu_stats(uri: str, host_cpu_ids: tuple[int, ...] = ()) -> StatsSample:
    """Read every running guest's CPU counters in one bulk call, then each listed host CPU's counters.

    This is the collector's whole per-tick cost on a host: one ``getAllDomainStats`` round trip for all
    guests plus one ``getCPUStats`` per host CPU.
    """
    conn = connect(uri)
    rt = RoundTrips(uri)
    try:
        wall = time.time()
        before = time.monotonic()
        records = rt.call(conn.getAllDomainStats, _CPU_STATS_FLAGS, _ACTIVE_ONLY)
        mono = (before + time.monotonic()) / 2
        guests = tuple(_guest_counters(dom, stats) for dom, stats in records)
        host_cpus = tuple(_host_cpu_counters(rt, conn, host_cpu_ids))
    except TransientVirtError:
        disconnect(uri)
        raise
    return StatsSample(mono=mono, wall=wall, guests=guests, host_cpus=host_cpus, round_trips=rt.count)


def fetch_cpu_stats_per_guest(uri: str) -> StatsSample:
    """Read the same guest counters one guest at a time (list, then one stats call per guest).

    The way a script without the bulk call would do it; kept as the benchmark's baseline.
    """
    conn = connect(uri)
    rt = RoundTrips(uri)
    try:
        wall = time.time()
        before = time.monotonic()
        guests = []
        for dom in rt.call(conn.listAllDomains, libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
            for record_dom, stats in rt.call(conn.domainListGetStats, [dom], _CPU_STATS_FLAGS, 0):
                guests.append(_guest_counters(record_dom, stats))
        mono = (before + time.monotonic()) / 2
    except TransientVirtError:
        disconnect(uri)
        raise
    return StatsSample(mono=mono, wall=wall, guests=tuple(guests), host_cpus=(), round_trips=rt.count)
