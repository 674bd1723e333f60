"""A host session for the apply engine: read, write and restore guests' pins and caps."""

from __future__ import annotations

import threading
import time
from typing import Any

import libvirt

from hosts.cpulist import cpumap_to_cpus, parse_cpulist
from hosts.libvirt.connection import SEEN_FRESH_SECONDS, RoundTrips, _lock, _seen, connect
from hosts.libvirt.errors import PermanentVirtError
from hosts.libvirt.facts import DomainFacts
from hosts.libvirt.inventory import _domain_facts
from hosts.libvirt.xml import CputuneEditError, restore_cputune

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

    def __init__(self, uri: str, *, name: str = "") -> None:
        self.uri = uri
        self.conn = connect(uri, name=name)
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

    def alive(self) -> bool:
        """Whether the connection still stands (a local check: no round trip)."""
        try:
            return bool(self.conn.isAlive())
        except libvirt.libvirtError:
            return False

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

    def restore(self, uuid: str, before: dict[str, Any], scopes: tuple[str, ...], config_fields: list[str]) -> None:
        """Put back what a change touched as a snapshot found it.

        Live tuning is written back value by value (scheduler parameters in whichever order the kernel
        accepts); in the persistent config only the ``<cputune>`` elements of ``config_fields`` are put back
        as the snapshot's XML had them (see restore_config_fields), never the whole snapshot.
        """
        live = before.get("live") if "live" in scopes else None
        config_xml = before.get("config_xml") if "config" in scopes else None
        self.restore_fields(uuid, live or {}, config_fields if config_xml else [], config_xml)

    def restore_fields(self, uuid: str, live: dict[str, Any], config_fields: list[str], config_xml: str | None) -> None:
        """Write ``live`` values back (a change's ``desired`` shape); restore ``config_fields`` from ``config_xml``."""
        if live:
            self.apply(uuid, {**live, "sched": live.get("sched") or {}}, ("live",))
        if config_fields and config_xml:
            self.restore_config_fields(uuid, config_xml, config_fields)

    def restore_config_fields(self, uuid: str, before_xml: str, labels: list[str]) -> None:
        """Put the persistent config's ``<cputune>`` elements of ``labels`` back as ``before_xml`` had them.

        The guest's config is read now (with its secrets, as ``virsh edit`` does), only those elements are
        changed, and it is defined again: a field changed since by another request or by hand is kept.
        Unset fields (libvirt's getters report 0 for a scheduler parameter absent from the config) come back
        unset, which libvirt's setters cannot do: ``cpu_shares=0`` would be stored and break the next start.
        """
        dom = self.domain(uuid)
        flags = libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE
        current = self.rt.call(dom.XMLDesc, flags)
        try:
            edited = restore_cputune(current, before_xml, labels)
        except CputuneEditError as exc:
            raise PermanentVirtError(
                f"the guest's persistent config could not be edited field by field: {exc}"
            ) from exc
        if edited != current:
            self.rt.call(self.conn.defineXML, edited)
