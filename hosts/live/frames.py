"""The live-chart frame: one format for the collector, the history in Redis and static/js/charts.js.

A frame is one second (or, at the 1-minute resolution, one minute's highest values) of one guest or host,
sent to browsers and kept in history as compact JSON text. Its keys are one letter because a 100-guest host
sends hundreds a second. ``static/js/frame-format.json`` is an example of each kind that charts.js is
written against and tests/test_frame_format.py checks both sides against this module.

Guest frame::

    {"t": 1733130000.123,   # wall time of the sample, epoch seconds
     "n": [0, 1],           # vCPU numbers (may be sparse after hotplug)
     "v": [97.5, 0.3],      # each vCPU's CPU time, % of one host CPU, in the order of "n"
     "d": [0.0, 0.1],       # each vCPU's run-queue delay (steal), % of the interval, in the order of "n"
     "o": 1.2,              # emulator + I/O threads: the guest's total minus its vCPUs, %
     "g": 99.0,             # the guest's total, %
     "gap": 1}              # optional: the line breaks before this frame (restart, outage)

Host frame::

    {"t": 1733130000.123, "i": [0, 1, 2, 3], "b": [12.0, 100.0, 3.5, 0.0], "gap": 1}
    # "i": host CPU ids, "b": each one's busy %, in the order of "i"

A value libvirt could not give (a counter that went backwards, a vCPU that just appeared) is ``null``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

TIME, GAP = "t", "gap"
# Per-item lists, keyed by the id list they follow: guests' vCPUs, hosts' CPUs.
KEYED_FIELDS = {"n": ("v", "d"), "i": ("b",)}
# Single numbers of a guest frame.
SCALAR_FIELDS = ("o", "g")
GUEST_KEYS = frozenset({TIME, "n", "v", "d", "o", "g"})
HOST_KEYS = frozenset({TIME, "i", "b"})


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def guest_frame(
    wall: float,
    vcpu: Mapping[int, float | None],
    delay: Mapping[int, float | None],
    overhead: float | None,
    total: float | None,
    *,
    gap: bool = False,
) -> dict[str, Any]:
    """A guest's frame from its per-vCPU load and delay (% by vCPU number), overhead and total."""
    numbers = sorted(vcpu)
    frame: dict[str, Any] = {
        TIME: round(wall, 3),
        "n": numbers,
        "v": [_round(vcpu[n]) for n in numbers],
        "d": [_round(delay.get(n)) for n in numbers],
        "o": _round(overhead),
        "g": _round(total),
    }
    if gap:
        frame[GAP] = 1
    return frame


def host_frame(wall: float, busy: Mapping[int, float | None], *, gap: bool = False) -> dict[str, Any]:
    """A host's frame from each host CPU's busy % (by CPU id)."""
    ids = sorted(busy)
    frame: dict[str, Any] = {TIME: round(wall, 3), "i": ids, "b": [_round(busy[c]) for c in ids]}
    if gap:
        frame[GAP] = 1
    return frame
