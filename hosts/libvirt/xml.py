"""Parse libvirt's XML (a host's capabilities, a guest's CPU tuning) and undo a guest's <cputune> fields one by one."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET  # building and writing elements; parsing goes through defusedxml
from collections.abc import Iterable
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


# The <cputune> element holding each scheduler parameter in a domain's XML.
_SCHED_ELEMENTS = {
    "cpu_shares": "shares",
    "vcpu_period": "period",
    "vcpu_quota": "quota",
    "emulator_period": "emulator_period",
    "emulator_quota": "emulator_quota",
    "global_period": "global_period",
    "global_quota": "global_quota",
    "iothread_period": "iothread_period",
    "iothread_quota": "iothread_quota",
}

# libvirt formats a domain's <cputune> at the top level, indented by two spaces, once.
_CPUTUNE_BLOCK = re.compile(r"^  <cputune>\n.*?^  </cputune>\n", re.MULTILINE | re.DOTALL)
_DOMAIN_END = re.compile(r"^</domain>", re.MULTILINE)


class CputuneEditError(ValueError):
    """A domain XML whose <cputune> cannot be edited element by element."""


def _matches(element: ET.Element, label: str) -> bool:
    """Whether a <cputune> child holds the field ``label`` (``vcpupin 0``, ``emulatorpin``, ``vcpu_quota``)."""
    name, _, number = label.partition(" ")
    if name == "vcpupin":
        return element.tag == "vcpupin" and element.get("vcpu") == number
    if name == "iothreadpin":
        return element.tag == "iothreadpin" and element.get("iothread") == number
    if name == "emulatorpin":
        return element.tag == "emulatorpin"
    return element.tag == _SCHED_ELEMENTS.get(name)


def restore_cputune(current_xml: str, before_xml: str, labels: Iterable[str]) -> str:
    """Return ``current_xml`` with the ``<cputune>`` elements of ``labels`` as ``before_xml`` had them.

    An element ``before_xml`` had is copied back; one it lacked (the field was unset, libvirt's default
    applied) is removed. Everything else, inside ``<cputune>`` or not, stays exactly as ``current_xml``
    has it: this is how a config change is undone field by field without redefining an old XML over
    changes made since. Raises CputuneEditError for XML not in libvirt's own layout.
    """
    wanted = [
        label
        for label in labels
        if label.partition(" ")[0] in ("vcpupin", "iothreadpin", "emulatorpin") or label in _SCHED_ELEMENTS
    ]
    if not wanted:
        return current_xml
    before = parse_xml(before_xml).find("cputune")
    blocks = _CPUTUNE_BLOCK.findall(current_xml)
    if len(blocks) > 1:
        raise CputuneEditError("the guest's XML holds more than one <cputune>")
    if not blocks and parse_xml(current_xml).find("cputune") is not None:
        raise CputuneEditError("the guest's <cputune> is not laid out as libvirt writes it")
    tune = parse_xml(blocks[0]) if blocks else ET.Element("cputune")
    for label in wanted:
        for element in [e for e in tune if _matches(e, label)]:
            tune.remove(element)
        for element in [e for e in (before if before is not None else []) if _matches(e, label)]:
            element.tail = None
            tune.append(element)
    if len(tune):
        ET.indent(tune, space="  ", level=1)
        tune.tail = None
        block = "  " + ET.tostring(tune, encoding="unicode") + "\n"
    else:
        block = ""
    if blocks:
        edited = current_xml.replace(blocks[0], block, 1)
    else:
        end = _DOMAIN_END.search(current_xml)
        if end is None:
            raise CputuneEditError("the guest's XML has no closing </domain> line")
        edited = current_xml[: end.start()] + block + current_xml[end.start() :]
    parse_xml(edited)  # still well-formed
    return edited
