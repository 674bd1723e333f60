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
     "f": [4.0, null],      # optional: foreign load on the host CPU each vCPU holds alone, % of one CPU,
                            # in the order of "n" (null: the vCPU has no dedicated CPU, or unknown)
     "gap": 1}              # optional: the line breaks before this frame (restart, outage)

Host frame::

    {"t": 1733130000.123, "i": [0, 1, 2, 3], "b": [12.0, 100.0, 3.5, 0.0], "f": [null, 4.0, null, null], "gap": 1}
    # "i": host CPU ids, "b": each one's busy %, in the order of "i"
    # "f" (optional): each dedicated CPU's foreign load, % of one CPU, null for CPUs no guest holds alone

"f" is present only when the guest or host has a dedicated CPU (hosts/live/interference.py says which
CPUs are dedicated and how foreign load is computed).

A value libvirt could not give (a counter that went backwards, a vCPU that just appeared) is ``null``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

TIME, GAP, FOREIGN = "t", "gap", "f"
# Per-item lists, keyed by the id list they follow: guests' vCPUs, hosts' CPUs.
KEYED_FIELDS = {"n": ("v", "d", FOREIGN), "i": ("b", FOREIGN)}
# Single numbers of a guest frame.
SCALAR_FIELDS = ("o", "g")
GUEST_KEYS = frozenset({TIME, "n", "v", "d", "o", "g", FOREIGN})
HOST_KEYS = frozenset({TIME, "i", "b", FOREIGN})
# Keys a frame may leave out.
OPTIONAL_KEYS = frozenset({GAP, FOREIGN})


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def guest_frame(
    wall: float,
    vcpu: Mapping[int, float | None],
    delay: Mapping[int, float | None],
    overhead: float | None,
    total: float | None,
    *,
    foreign: Mapping[int, float | None] | None = None,
    gap: bool = False,
) -> dict[str, Any]:
    """A guest's frame from its per-vCPU load and delay (% by vCPU number), overhead and total.

    ``foreign``: the foreign load on the CPU each dedicated vCPU holds alone (by vCPU number), if any.
    """
    numbers = sorted(vcpu)
    frame: dict[str, Any] = {
        TIME: round(wall, 3),
        "n": numbers,
        "v": [_round(vcpu[n]) for n in numbers],
        "d": [_round(delay.get(n)) for n in numbers],
        "o": _round(overhead),
        "g": _round(total),
    }
    if foreign:
        frame[FOREIGN] = [_round(foreign.get(n)) for n in numbers]
    if gap:
        frame[GAP] = 1
    return frame


def host_frame(
    wall: float,
    busy: Mapping[int, float | None],
    *,
    foreign: Mapping[int, float | None] | None = None,
    gap: bool = False,
) -> dict[str, Any]:
    """A host's frame from each host CPU's busy % (by CPU id) and each dedicated CPU's foreign load."""
    ids = sorted(busy)
    frame: dict[str, Any] = {TIME: round(wall, 3), "i": ids, "b": [_round(busy[c]) for c in ids]}
    if foreign:
        frame[FOREIGN] = [_round(foreign.get(c)) for c in ids]
    if gap:
        frame[GAP] = 1
    return frame
