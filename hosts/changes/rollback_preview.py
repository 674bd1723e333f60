"""Preview a rollback: per guest, what it would restore and what conflicts, from a fresh read of the hosts.

Read-only. Each host of the request is read on the call pool, all at once, each within its deadline (open +
one call + a little per guest, hosts.libvirt.deadlines); a host that does not answer in time is reported
as such for its guests instead of holding up the others (or the page). The rollback itself plans again
when it runs (hosts/changes/guest.py), so the preview is what an approver reads, not what is obeyed.
"""

from __future__ import annotations

import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from hosts.changes.desired_state import later_writes
from hosts.changes.rollback import ALREADY, CONFLICT, RESTORE, FieldPlan, plan_rollback
from hosts.libvirt import connection, deadlines, pools
from hosts.libvirt.errors import HostTimeout, VirtError
from hosts.libvirt.facts import DomainFacts
from hosts.libvirt.session import HostSession
from hosts.models import ChangeRequest, ChangeTarget
from hosts.vocabulary import SCOPE_PARTS

Read = dict[str, DomainFacts | VirtError]


@dataclass
class GuestPreview:
    """One guest's rollback preview: the fields it would restore, the conflicts, or why it was not read."""

    target: ChangeTarget
    answered: bool
    error: str = ""
    plan: list[FieldPlan] = field(default_factory=list)

    def items(self, action: str) -> list[FieldPlan]:
        return [item for item in self.plan if item.action == action]

    @property
    def restore(self) -> list[FieldPlan]:
        return self.items(RESTORE)

    @property
    def conflicts(self) -> list[FieldPlan]:
        return self.items(CONFLICT)

    @property
    def already(self) -> list[FieldPlan]:
        return self.items(ALREADY)

    def as_json(self) -> dict[str, Any]:
        t = self.target
        return {
            "target": t.pk,
            "domain": t.domain_id,
            "domain_name": t.domain_name,
            "host": t.host_id,
            "host_name": t.host.name,
            "answered": self.answered,
            "error": self.error,
            "restore": [_public(i, ("scope", "field", "now", "restore_to")) for i in self.restore],
            "conflicts": [_public(i, ("scope", "field", "wrote", "now", "why")) for i in self.conflicts],
            "already": [_public(i, ("scope", "field", "now")) for i in self.already],
        }


def _public(item: FieldPlan, keys: tuple[str, ...]) -> dict[str, Any]:
    data = item.as_json()
    return {k: data[k] for k in keys}


def _read_host(uri: str, name: str, uuids: list[str], scopes: tuple[str, ...]) -> Read:
    """Read a host's guests (a call-pool thread: no database)."""
    session = HostSession(uri, name=name)
    out: Read = {}
    for uuid in uuids:
        try:
            out[uuid] = session.read_guest(uuid, scopes, with_affinity=False)
        except VirtError as exc:
            out[uuid] = exc
    return out


def rollback_targets(cr: ChangeRequest) -> list[ChangeTarget]:
    """The guests a rollback of ``cr`` would put back (as request_rollback chooses them)."""
    return list(
        cr.targets.filter(status__in=ChangeTarget.ROLLBACKABLE, before__isnull=False)
        .select_related("host")
        .order_by("host__name", "domain_name")
    )


def preview_rollback(cr: ChangeRequest) -> list[GuestPreview]:
    """Per guest a rollback of ``cr`` would touch: what it would restore and what conflicts, read now."""
    targets = rollback_targets(cr)
    scopes = SCOPE_PARTS[cr.scope]
    later = later_writes(targets)
    by_host: dict[int, list[ChangeTarget]] = {}
    for target in targets:
        by_host.setdefault(target.host_id, []).append(target)
    started, began = time.monotonic(), time.time()
    futures: dict[int, Future[Read]] = {
        host_id: pools.call_pool().submit(
            _read_host, ts[0].host.uri, ts[0].host.name, [str(t.domain_uuid) for t in ts], scopes
        )
        for host_id, ts in by_host.items()
    }
    out: list[GuestPreview] = []
    for host_id, ts in by_host.items():
        host = ts[0].host
        seconds = deadlines.host_seconds(len(ts))
        try:
            read = deadlines.wait(futures[host_id], started + seconds - time.monotonic(), host.name)
        except HostTimeout as exc:
            connection.mark_stuck(host.uri, futures[host_id], began)
            out += [GuestPreview(t, answered=False, error=exc.message) for t in ts]
            continue
        except VirtError as exc:
            out += [GuestPreview(t, answered=False, error=f"{host.name} cannot be reached: {exc.message}") for t in ts]
            continue
        for target in ts:
            guest = read.get(str(target.domain_uuid))
            if not isinstance(guest, DomainFacts):
                why = guest.message if isinstance(guest, VirtError) else "not read"
                out.append(GuestPreview(target, answered=True, error=f"Could not read {target.domain_name}: {why}."))
                continue
            plan = plan_rollback(
                target.desired, target.before or {}, guest.snapshot_json(), scopes, later.get(target.pk)
            )
            out.append(GuestPreview(target, answered=True, plan=plan))
    return out
