"""Feed the planner from the inventory: hosts, their partitions and every guest, in a fixed number of queries.

hosts/planning/planner.py is pure; this module turns database rows into its inputs and its plans into rows to show.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from hosts.cpulist import CpulistError, parse_cpulist
from hosts.models import Domain, Host, HostCPU
from hosts.planning.planner import diff, plan_change
from hosts.planning.schema import ProfileSpec
from hosts.planning.types import CPUInfo, GuestPlan, GuestState, HostLayout
from hosts.vocabulary import SCOPE_PARTS, housekeeping_set


def _siblings(text: str, cpu_id: int) -> frozenset[int]:
    try:
        return parse_cpulist(text)
    except CpulistError:
        return frozenset({cpu_id})


def host_layouts(host_ids: Iterable[int]) -> dict[int, HostLayout]:
    """Return each host's CPUs and housekeeping partition, in two queries."""
    hosts = {h.pk: h for h in Host.objects.filter(pk__in=set(host_ids))}
    cpus: dict[int, list[CPUInfo]] = {pk: [] for pk in hosts}
    for cpu in HostCPU.objects.filter(host_id__in=hosts).select_related("cell").order_by("cpu_id"):
        cpus[cpu.host_id].append(
            CPUInfo(
                cpu_id=cpu.cpu_id,
                cell_id=cpu.cell.cell_id,
                socket_id=cpu.socket_id,
                core_id=cpu.core_id,
                siblings=_siblings(cpu.siblings, cpu.cpu_id),
                online=cpu.online,
            )
        )
    layouts = {}
    for pk, host in hosts.items():
        housekeeping = housekeeping_set(host.housekeeping_cpus)
        layouts[pk] = HostLayout(host_id=pk, name=host.name, cpus=tuple(cpus[pk]), housekeeping=housekeeping)
    return layouts


def guest_state(domain: Domain) -> GuestState:
    """Return the planner's view of a guest row."""
    return GuestState(
        domain_id=domain.pk,
        name=domain.name,
        host_id=domain.host_id,
        state=domain.state,
        vcpus_max=domain.vcpus_max,
        vcpus_current=domain.vcpus_current,
        placement=domain.placement,
        iothread_ids=tuple(int(i) for i in domain.iothread_ids or ()),
        live=domain.tuning_live,
        config=domain.tuning_config,
    )


@dataclass(frozen=True)
class TargetPlan:
    """A guest's plan with the rows a reviewer reads: per scope, each field's current and desired value."""

    domain: Domain
    plan: GuestPlan
    diff: dict[str, list[dict[str, Any]]]

    @property
    def ok(self) -> bool:
        return self.plan.ok


def plan_for_domains(
    spec: ProfileSpec, domains: Sequence[Domain], scope: str, *, neighbours: Iterable[Domain] | None = None
) -> list[TargetPlan]:
    """Plan a profile for the given guests (in order), considering every other guest on their hosts.

    ``neighbours``: every guest of those hosts, for a caller that has just read them (else they are read).
    """
    host_ids = {d.host_id for d in domains}
    layouts = host_layouts(host_ids)
    by_host: dict[int, list[GuestState]] = {pk: [] for pk in host_ids}
    for other in Domain.objects.filter(host_id__in=host_ids) if neighbours is None else neighbours:
        if other.host_id in by_host:
            by_host[other.host_id].append(guest_state(other))
    plans = plan_change(spec, [guest_state(d) for d in domains], layouts, by_host, scope)
    out = []
    for domain, plan in zip(domains, plans, strict=True):
        rows = {
            part: diff(domain.tuning_live if part == "live" else domain.tuning_config, plan.desired)
            for part in SCOPE_PARTS[scope]
        }
        out.append(TargetPlan(domain=domain, plan=plan, diff=rows))
    return out
