"""Parse and format host CPU lists in libvirt's own syntax.

libvirt writes CPU sets as comma-separated items evaluated left to right: ``N`` adds a CPU, ``N-M`` adds a
range, ``^N`` removes a CPU added earlier. It refuses reversed ranges (``1-0``), empty items (``0,,1``),
negated ranges (``^1-2``) and an empty result. The same rules apply here so that what isoweb accepts,
libvirt accepts too, and every refusal names the token at fault.
"""

from collections.abc import Iterable

# libvirt's VIR_DOMAIN_CPUMASK_LEN: no host CPU number reaches this.
MAX_CPU_ID = 16384


class CpulistError(ValueError):
    """A CPU list that libvirt would refuse; the message names the offending token."""


def _where(token: str, whole: str) -> str:
    """Name a token, and the list it sits in only when the list holds more than that token."""
    return f"'{token}'" if token == whole else f"'{token}' in '{whole}'"


def _parse_number(token: str, whole: str) -> int:
    if not token.isdigit() or not token.isascii():
        raise CpulistError(f"{_where(token, whole)} is not a CPU number")
    if len(token) > len(str(MAX_CPU_ID)):
        raise CpulistError(f"CPU '{token[:12]}...' in the list is beyond the largest CPU number ({MAX_CPU_ID - 1})")
    value = int(token)
    if value >= MAX_CPU_ID:
        where = "" if token == whole else f" in '{whole}'"
        raise CpulistError(f"CPU {value}{where} is beyond the largest CPU number ({MAX_CPU_ID - 1})")
    return value


def parse_cpulist(text: str, *, host_cpus: Iterable[int] | None = None) -> frozenset[int]:
    """Return the set of CPUs that a libvirt cpulist names.

    With ``host_cpus`` given, a CPU the host does not have is refused (libvirt would silently drop it from
    a cpumap, which is worse than an error).
    """
    whole = text.strip()
    if not whole:
        raise CpulistError("the CPU list is empty")
    cpus: set[int] = set()
    for raw in whole.split(","):
        item = raw.strip()
        if not item:
            raise CpulistError(f"empty item in '{whole}' (two commas in a row, or a trailing comma)")
        if item.startswith("^"):
            body = item[1:].strip()
            if "-" in body:
                raise CpulistError(f"{_where(item, whole)}: a range cannot be excluded, only one CPU")
            cpus.discard(_parse_number(body, whole))
        elif "-" in item:
            first, _, last = (part.strip() for part in item.partition("-"))
            start, end = _parse_number(first, whole), _parse_number(last, whole)
            if start > end:
                raise CpulistError(f"{_where(item, whole)} is a reversed range (its first CPU is above its last)")
            cpus.update(range(start, end + 1))
        else:
            cpus.add(_parse_number(item, whole))
    if not cpus:
        raise CpulistError(f"'{whole}' leaves no CPU at all")
    if host_cpus is not None:
        missing = sorted(cpus - set(host_cpus))
        if missing:
            raise CpulistError(f"'{whole}' names CPU {format_cpulist(missing)}, which the host does not have")
    return frozenset(cpus)


def format_cpulist(cpus: Iterable[int]) -> str:
    """Return the shortest libvirt cpulist for a set of CPUs, e.g. ``0-3,6``."""
    ordered = sorted(set(cpus))
    parts: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(parts)


def cpumap_to_cpus(cpumap: Iterable[bool]) -> frozenset[int]:
    """Return the CPUs set in a libvirt cpumap (a sequence of booleans, one per host CPU)."""
    return frozenset(i for i, on in enumerate(cpumap) if on)
