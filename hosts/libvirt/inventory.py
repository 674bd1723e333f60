"""Read a host and every guest's CPU tuning in as few libvirt round trips as possible."""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import libvirt

from hosts.cpulist import cpumap_to_cpus, format_cpulist
from hosts.libvirt import pools
from hosts.libvirt.connection import IN_FLIGHT_PER_CONNECTION, RoundTrips, _lock, _Seen, _seen, connect, disconnect
from hosts.libvirt.errors import PermanentVirtError, TransientVirtError
from hosts.libvirt.facts import DomainFacts, HostFacts, Inventory, Tuning
from hosts.libvirt.xml import parse_capabilities, tuning_from_xml, version_text

log = logging.getLogger(__name__)


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


def _config_part(
    rt: RoundTrips, dom: libvirt.virDomain, host_cpus: frozenset[int], keep_xml: bool
) -> tuple[Tuning | None, dict[str, Any], str | None]:
    """Read a guest's persistent config: its tuning, its vCPU facts and (if ``keep_xml``) its secure XML.

    A transient guest has no persistent config: its tuning is then None.
    """
    try:
        sched = rt.call(dom.schedulerParametersFlags, libvirt.VIR_DOMAIN_AFFECT_CONFIG)
        flags = libvirt.VIR_DOMAIN_XML_INACTIVE | (libvirt.VIR_DOMAIN_XML_SECURE if keep_xml else 0)
        xml = rt.call(dom.XMLDesc, flags)
    except PermanentVirtError as exc:
        if exc.code != libvirt.VIR_ERR_OPERATION_INVALID:
            raise
        return None, {}, None
    tuning, facts = tuning_from_xml(xml, sched, host_cpus)
    return tuning, facts, xml if keep_xml else None


def _affinity_part(rt: RoundTrips, dom: libvirt.virDomain) -> tuple[dict[int, str], dict[int, str]]:
    """Where each vCPU thread may really run (the kernel's affinity), and each vCPU's state."""
    info, cpumaps = rt.call(dom.vcpus)
    affinity = {n: format_cpulist(cpumap_to_cpus(cpumap)) for (n, *_rest), cpumap in zip(info, cpumaps, strict=True)}
    return affinity, {n: VCPU_STATES.get(vstate, str(vstate)) for n, vstate, *_rest in info}


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
    config, facts, config_xml = _config_part(rt, dom, host_cpus, keep_config_xml) if with_config else (None, {}, None)
    persistent = config is not None or not with_config
    live: Tuning | None = None
    affinity: dict[int, str] | None = {}
    vcpu_states: dict[int, str] = {}
    if state_code not in (libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_CRASHED):
        live_sched = rt.call(dom.schedulerParametersFlags, libvirt.VIR_DOMAIN_AFFECT_LIVE)
        live, facts = tuning_from_xml(rt.call(dom.XMLDesc, 0), live_sched, host_cpus)
        affinity, vcpu_states = _affinity_part(rt, dom) if with_affinity else (None, {})
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


Record = tuple[libvirt.virDomain, dict[str, Any]]


def _read_host(rt: RoundTrips, conn: libvirt.virConnect, light: bool) -> tuple[HostFacts, int, list[Record]]:
    """Ask the host-wide questions together: the CPU map and every guest's state, and unless ``light`` the
    host's identity and topology (a light read keeps what the caller already knows)."""
    pool = pools.call_pool()
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
    host = HostFacts(hostname="", libvirt_version="", hypervisor_version="", cpu_model="", cells=(), online=online)
    if not light:
        topology = parse_capabilities(asked["capabilities"].result(), online)
        host = dataclasses.replace(
            host,
            hostname=asked["hostname"].result(),
            libvirt_version=version_text(asked["libvirt"].result()),
            hypervisor_version=version_text(asked["hypervisor"].result()),
            cpu_model=topology.cpu_model,
            cells=topology.cells,
        )
    return host, ncpus, asked["records"].result()


def _read_guests(
    rt: RoundTrips, records: list[Record], online: frozenset[int], *, light: bool, keep_config: bool
) -> list[DomainFacts]:
    """Read every guest, a few in flight at once on the one connection (libvirtd allows 5 per client)."""

    def read(record: Record) -> DomainFacts | None:
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
            log.info("guest %s vanished during the read of %s", dom.name(), rt.uri)
            return None

    return [facts for facts in pools.bounded_map(read, records, IN_FLIGHT_PER_CONNECTION) if facts is not None]


def fetch_inventory(uri: str, *, name: str = "", light: bool = False, keep_config: bool = False) -> Inventory:
    """Read a host's facts, topology and every guest with its tuning, in as few round trips as libvirt allows.

    Per host: capabilities, CPU map, versions, hostname, and one bulk state call listing every guest.
    Per guest: its config XML and scheduler parameters, and for a running guest its live XML, live scheduler
    parameters and the vCPU threads' real affinity. A guest that vanishes mid-read is left out.

    ``light=True`` reads a running guest's live XML and scheduler parameters only (what re-planning a live
    change needs, and what its snapshot holds); its config and affinity are then None. Of the host it reads
    only which CPUs are online: name, versions and topology are left blank, and the caller keeps what it
    knew. ``keep_config=True`` also reads every guest's config, with its secrets, and keeps its XML (what
    re-planning and snapshotting a change of the persistent config needs). ``name`` names the host in errors.
    """
    started = time.perf_counter()
    conn = connect(uri, name=name)
    rt = RoundTrips(uri)
    try:
        host, ncpus, records = _read_host(rt, conn, light)
        with _lock:
            _seen[uri] = _Seen(
                conn, ncpus, host.online, {dom.UUIDString(): dom for dom, _stats in records}, time.monotonic()
            )
        domains = _read_guests(rt, records, host.online, light=light, keep_config=keep_config)
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


def fetch_guest(uri: str, uuid: str, *, name: str = "") -> DomainFacts | None:
    """Read one guest completely (config, live tuning, the vCPU threads' real affinity), or None if it is gone.

    What the drift watcher reads after a libvirt event: a handful of round trips (the CPU map, the guest's
    state, its config and live XML and scheduler parameters, its vCPUs), never the whole host. The caller
    bounds it with a deadline (it runs on the caller's thread). A guest caught mid-start can fail to read
    with a system error although the host is fine, so the connection is kept (a dead one is replaced by
    connect, which asks whether it is alive).
    """
    conn = connect(uri, name=name)
    rt = RoundTrips(uri)
    _ncpus, cpumap, _online_count = rt.call(conn.getCPUMap)
    try:
        dom = rt.call(conn.lookupByUUIDString, uuid)
        state = rt.call(dom.state)[0]
        return _domain_facts(rt, dom, state, cpumap_to_cpus(cpumap))
    except PermanentVirtError as exc:
        if exc.code == libvirt.VIR_ERR_NO_DOMAIN:
            return None
        raise
