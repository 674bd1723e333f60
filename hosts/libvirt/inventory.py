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
    pool = pools.call_pool()
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
                libvirt_version=version_text(asked["libvirt"].result()),
                hypervisor_version=version_text(asked["hypervisor"].result()),
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
        read_all = pools.bounded_map(read, records, IN_FLIGHT_PER_CONNECTION)
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
