"""Plan a profile's scheduler caps on one guest and check them against the caps the guest already has.

The caps a guest has stay in force next to the profile's, so a combination that cgroup v1 refuses is only
visible here, with the guest's tuning at hand; the profile alone passed hosts/planning/schema.py.
"""

from __future__ import annotations

from hosts.planning.draft import GuestDraft
from hosts.planning.schema import SHARES_CGROUP_V2_MAX, cgroup_v1_conflicts
from hosts.vocabulary import SCOPE_PARTS


def plan_sched(draft: GuestDraft) -> None:
    """Set ``sched`` from the profile; refuse caps cgroup v1 rejects, warn about shares cgroup v2 rejects."""
    sched = draft.spec.sched
    if not sched:
        return
    draft.desired["sched"] = sched
    for part in SCOPE_PARTS[draft.scope]:
        tuning = (draft.guest.live if part == "live" else draft.guest.config) or {}
        current = {k: v for k, v in (tuning.get("sched") or {}).items() if isinstance(v, int) and v > 0}
        for problem in cgroup_v1_conflicts({**current, **sched}):
            draft.error("sched", "cgroup_v1_ratio", f"with the guest's current {part} caps, {problem}")
    shares = sched.get("cpu_shares", 0)
    if shares > SHARES_CGROUP_V2_MAX:
        draft.warn(
            "sched.cpu_shares",
            "shares_cgroup_v2",
            f"sched.cpu_shares {shares} is above {SHARES_CGROUP_V2_MAX}: hosts with cgroup v2 accept only "
            f"1..{SHARES_CGROUP_V2_MAX} and will refuse it",
        )
