"""Parse libvirt's XML: a host's capabilities (topology) and a guest's CPU tuning."""

from __future__ import annotations

import xml.etree.ElementTree as ET  # for the Element type only; parsing goes through defusedxml
from typing import Any

from defusedxml.ElementTree import fromstring as parse_xml

from hosts.cpulist import format_cpulist, parse_cpulist
from hosts.libvirt.facts import HostCPU, HostFacts, NumaCell, Tuning
from hosts.vocabulary import SCHED_NAMES


def version_text(number: int) -> str:
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
        sched={k: int(sched[k]) for k in SCHED_NAMES if k in sched},
    )
    facts = {
        "vcpus_max": vcpus_max,
        "vcpus_current": vcpus_current,
        "placement": placement,
        "iothread_ids": tuple(iothread_ids),
    }
    return tuning, facts
