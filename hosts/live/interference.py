"""Find the host CPUs a guest holds alone and the foreign load on them; keep each guest's isolation score.

A host CPU is **dedicated** to a guest when that guest's threads are the only guest threads pinned to it
and at least one of its vCPUs is pinned to that CPU only (``vcpupin`` = ``N``). A thread whose pin set
covers every host CPU is not pinned (it floats): a floating thread of another guest does not make the CPU
shared, but when it runs there it is exactly the foreign load an operator wants to see.

**Foreign load** on a dedicated CPU is its busy time minus the time of the owner's threads pinned to it
alone: its vCPUs pinned to ``N`` only and, when the emulator and every I/O thread are pinned to ``N`` only
too, the guest's overhead (total minus vCPUs, the only per-thread split libvirt's bulk stats give). Every
other thread that ran there (host daemons, other guests' floating threads, the owner's own threads that
may also run elsewhere) counts as foreign. All from the counters the collector reads anyway.

The **isolation score** of a guest is the share of the last hour its dedicated CPUs were free of foreign
load above ``ISOWEB_FOREIGN_LOAD_THRESHOLD`` (% of one CPU). The collector adds, per tick and owner guest,
the seconds sampled and the seconds clean to a per-minute Redis hash that expires after the hour
(so at most 61 small keys per guest, whatever happens); the score sums the last 60 minutes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from hosts.cpulist import CpulistError, parse_cpulist
from hosts.live import history
from hosts.live.rates import HostLoad

SCORE_WINDOW_SECONDS = 3600
_MINUTE = 60
_BUCKET_TTL_SECONDS = SCORE_WINDOW_SECONDS + 5 * _MINUTE


@dataclass(frozen=True)
class Dedication:
    """A host CPU one guest holds alone: the guest and which of its threads are pinned to that CPU only."""

    cpu_id: int
    domain_id: int
    uuid: str
    vcpus: tuple[int, ...]
    with_overhead: bool  # the emulator and every I/O thread are pinned to this CPU only as well


def _cpus(cpulist: Any) -> frozenset[int] | None:
    if not cpulist:
        return None
    try:
        return parse_cpulist(str(cpulist))
    except CpulistError:
        return None  # the inventory shows the bad pin set; here it just cannot make a CPU dedicated


def dedicated_cpus(
    guests: Iterable[tuple[int, str, Mapping[str, Any] | None]], host_cpus: Iterable[int]
) -> dict[int, Dedication]:
    """Return the dedicated CPUs of a host from its running guests' live tuning, by host CPU id.

    ``guests`` holds ``(domain_id, uuid, tuning_live)``; a guest without live tuning is not running and
    is left out (its threads compete with nothing now).
    """
    host = frozenset(host_cpus)
    if not host:
        return {}
    pinned_by: dict[int, set[int]] = {}
    alone: dict[tuple[int, int], list[int]] = {}  # (domain, cpu) -> vCPUs pinned to that CPU only
    rest_alone: dict[int, frozenset[int] | None] = {}  # domain -> the one CPU all its other threads are on
    uuids: dict[int, str] = {}
    for domain_id, uuid, tuning in guests:
        if tuning is None:
            continue
        uuids[domain_id] = uuid
        other_sets: list[frozenset[int] | None] = []

        def pin(cpus: frozenset[int] | None, domain_id: int = domain_id) -> None:
            if cpus is not None and not cpus >= host:  # narrower than the host: pinned, not floating
                for cpu in cpus:
                    pinned_by.setdefault(cpu, set()).add(domain_id)

        for number, cpulist in (tuning.get("vcpupin") or {}).items():
            cpus = _cpus(cpulist)
            pin(cpus)
            if cpus is not None and len(cpus) == 1 and str(number).isdigit():
                alone.setdefault((domain_id, next(iter(cpus))), []).append(int(number))
        emulator = _cpus(tuning.get("emulatorpin"))
        pin(emulator)
        other_sets.append(emulator)
        for cpulist in (tuning.get("iothreadpin") or {}).values():
            cpus = _cpus(cpulist)
            pin(cpus)
            other_sets.append(cpus)
        first = other_sets[0]
        same = first is not None and len(first) == 1 and all(s == first for s in other_sets)
        rest_alone[domain_id] = first if same else None

    out: dict[int, Dedication] = {}
    for (domain_id, cpu), vcpus in sorted(alone.items()):
        if cpu not in host or pinned_by.get(cpu) != {domain_id}:
            continue
        out[cpu] = Dedication(
            cpu_id=cpu,
            domain_id=domain_id,
            uuid=uuids[domain_id],
            vcpus=tuple(sorted(vcpus)),
            with_overhead=rest_alone.get(domain_id) == frozenset({cpu}),
        )
    return out


def foreign_load(load: HostLoad, dedicated: Mapping[int, Dedication]) -> dict[int, float | None]:
    """Return each dedicated CPU's foreign load (% of one CPU) over the tick, ``None`` where unknown.

    Unknown: the CPU's counters or the owner's were not usable this tick (restart, hotplug, a CPU gone).
    """
    out: dict[int, float | None] = {}
    for cpu, holder in dedicated.items():
        busy = load.cpus.get(cpu)
        guest = load.guests.get(holder.uuid)
        if busy is None or guest is None or any(v not in guest.vcpu for v in holder.vcpus):
            out[cpu] = None
            continue
        own = sum(guest.vcpu[v] for v in holder.vcpus)
        if holder.with_overhead:
            if guest.overhead is None:
                out[cpu] = None
                continue
            own += guest.overhead
        out[cpu] = min(max(busy - own, 0.0), 100.0)
    return out


def by_guest_vcpu(
    dedicated: Mapping[int, Dedication], foreign: Mapping[int, float | None]
) -> dict[str, dict[int, float | None]]:
    """Return, per owner guest UUID, the foreign load on the CPU each of its dedicated vCPUs holds."""
    out: dict[str, dict[int, float | None]] = {}
    for cpu, holder in dedicated.items():
        for vcpu in holder.vcpus:
            out.setdefault(holder.uuid, {})[vcpu] = foreign.get(cpu)
    return out


# --- the isolation score -------------------------------------------------------------------------------


def _bucket_key(domain_id: int, minute: int) -> str:
    return f"isoweb:isolation:{int(domain_id)}:{minute}"


def record(
    pipe: Any,
    wall: float,
    dt: float,
    dedicated: Mapping[int, Dedication],
    foreign: Mapping[int, float | None],
    threshold: float,
) -> None:
    """Queue, per owner guest, ``dt`` seconds sampled and whether they were clean, on the tick's pipeline.

    A tick is clean when every dedicated CPU of the guest carried at most ``threshold`` % of foreign load;
    a CPU whose load is unknown this tick makes the tick count for nothing.
    """
    per_guest: dict[int, list[float | None]] = {}
    for cpu, holder in dedicated.items():
        per_guest.setdefault(holder.domain_id, []).append(foreign.get(cpu))
    minute = math.floor(wall / _MINUTE)
    seconds = round(dt, 3)
    for domain_id, values in per_guest.items():
        if any(v is None for v in values):
            continue
        name = _bucket_key(domain_id, minute)
        pipe.hincrbyfloat(name, "n", seconds)
        if all(v is not None and v <= threshold for v in values):
            pipe.hincrbyfloat(name, "ok", seconds)
        pipe.expire(name, _BUCKET_TTL_SECONDS)


@dataclass(frozen=True)
class IsolationScore:
    """A guest's isolation over the last hour: the clean share of the seconds its dedicated CPUs were sampled."""

    score: float | None  # 0..1, None when nothing was sampled
    sampled_seconds: float
    clean_seconds: float
    window_seconds: int = SCORE_WINDOW_SECONDS


def score(domain_id: int, *, now: float | None = None, client: Any = None) -> IsolationScore:
    """Read a guest's isolation score from the last hour's minute buckets (one pipelined round trip)."""
    now = time.time() if now is None else now
    newest = math.floor(now / _MINUTE)
    redis_client = client or history.client()
    pipe = redis_client.pipeline(transaction=False)
    for minute in range(newest - SCORE_WINDOW_SECONDS // _MINUTE + 1, newest + 1):
        pipe.hmget(_bucket_key(domain_id, minute), "n", "ok")
    sampled = clean = 0.0
    for n, ok in pipe.execute():
        sampled += float(n or 0)
        clean += float(ok or 0)
    share = round(min(clean / sampled, 1.0), 4) if sampled > 0 else None
    return IsolationScore(score=share, sampled_seconds=round(sampled, 1), clean_seconds=round(clean, 1))
