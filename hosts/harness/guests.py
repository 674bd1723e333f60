"""Define, start and remove the local fleet's guests (the demo/test harness only, not the product)."""

from __future__ import annotations

import re

import libvirt

from hosts.libvirt.connection import RoundTrips, connect
from hosts.libvirt.errors import PermanentVirtError, VirtError


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


def remove_every_guest(uri: str) -> list[str]:
    """Destroy every running guest of a host and remove every definition; go on past a guest that fails.

    Returns one line per guest that could not be removed (empty when all went). For the fleet's private
    daemons only: everything such a daemon holds belongs to its fleet, including guests a test defined.
    """
    conn = connect(uri)
    rt = RoundTrips(uri)
    problems: list[str] = []
    for dom in rt.call(conn.listAllDomains, 0):
        name = dom.name()
        try:
            if rt.call(dom.isActive):
                rt.call(dom.destroy)
            if rt.call(dom.isPersistent):
                rt.call(dom.undefine)
        except VirtError as exc:
            if exc.code != libvirt.VIR_ERR_NO_DOMAIN:
                problems.append(f"{name}: {exc.message}")
    return problems


_TUNING_PARTS = re.compile(
    r"<vcpu\b[^>]*>.*?</vcpu>|<vcpus>.*?</vcpus>|<iothreads>.*?</iothreads>|<cputune>.*?</cputune>", re.S
)


def tuning_fingerprints(uri: str, names: list[str]) -> dict[str, str]:
    """Each named guest's CPU tuning as libvirt shows it, live and in the persistent config (for tests).

    The vCPU count, I/O threads and ``<cputune>`` of the live and the inactive XML, plus whether the guest
    runs: two guests with the same fingerprint have the same pins, caps and vCPUs. A missing guest has none.
    """
    conn = connect(uri)
    rt = RoundTrips(uri)
    out: dict[str, str] = {}
    for name in names:
        try:
            dom = rt.call(conn.lookupByName, name)
        except PermanentVirtError as exc:
            if exc.code != libvirt.VIR_ERR_NO_DOMAIN:
                raise
            continue
        active = rt.call(dom.isActive)
        live = rt.call(dom.XMLDesc, 0) if active else ""
        config = rt.call(dom.XMLDesc, libvirt.VIR_DOMAIN_XML_INACTIVE)
        out[name] = "\n".join(
            [f"active={active}", *_TUNING_PARTS.findall(live), "--config--", *_TUNING_PARTS.findall(config)]
        )
    return out
