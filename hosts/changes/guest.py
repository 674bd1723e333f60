"""The libvirt side of one guest's change: snapshot, write, verify, restore (no database)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hosts.changes import fields
from hosts.changes.rollback import LaterWrites, plan_rollback, restoring
from hosts.changes.verify import VerifyError, touched, verify
from hosts.libvirt.errors import VirtError
from hosts.libvirt.facts import DomainFacts
from hosts.libvirt.inventory import DOMAIN_STATES
from hosts.libvirt.session import HostSession
from hosts.models import ChangeTarget

STATE_CODES = {name: code for code, name in DOMAIN_STATES.items()}


def undo_snapshot(target: ChangeTarget) -> dict[str, Any]:
    """The snapshot to restore from: the live values the change touched, and the config XML whose touched
    ``<cputune>`` elements go back (never the whole XML: see HostSession.restore)."""
    before = dict(target.before or {})
    if before.get("live"):
        before["live"] = touched(before["live"], target.desired)
    return before


def restore_problems(target: ChangeTarget, guest: DomainFacts, scopes: tuple[str, ...]) -> list[str]:
    """Return what differs, in what the change touched, between the snapshot and the guest now."""
    before = target.before or {}
    problems = []
    for scope in scopes:
        now = guest.live if scope == "live" else guest.config
        if before.get(scope) and now is not None:
            problems += verify(touched(before[scope], target.desired), guest, (scope,), expected="was")
    return problems


@dataclass
class Outcome:
    """What the libvirt side of one guest's apply or rollback came to (no database involved)."""

    ok: bool
    guest: DomainFacts | None = None  # the guest as read: a snapshot taken, or its state after the change
    error: str = ""
    restore_error: str = ""
    # The host stopped answering once writes may have been sent: what the guest holds is not known.
    unknown: bool = False
    # Nothing was sent to the guest (its host's deadline passed before its turn).
    untouched: bool = False
    # A rollback's plan, field by field, as JSON (hosts/changes/rollback.py): restored, conflicts, already back.
    rollback: list[dict[str, Any]] | None = None


def snapshot_guest(session: HostSession, target: ChangeTarget, scopes: tuple[str, ...]) -> Outcome:
    """Read what the change's scopes touch, before anything is written (what an undo puts back)."""
    try:
        guest = session.read_guest(str(target.domain_uuid), scopes)
    except VirtError as exc:
        return Outcome(False, error=f"Could not read {target.domain_name} before changing it: {exc.message}.")
    if "live" in scopes and guest.live is None:
        return Outcome(False, error=f"{target.domain_name} is {guest.state}: a live change needs it running.")
    return Outcome(True, guest)


def apply_guest(session: HostSession, target: ChangeTarget, scopes: tuple[str, ...]) -> Outcome:
    """Write, read back and verify one guest; restore it from its snapshot if anything goes wrong."""
    uuid = str(target.domain_uuid)
    try:
        session.apply(uuid, target.desired, scopes)
        # The snapshot said the guest runs (or the scope is config only); the threads' affinity can only have
        # moved if vCPU pins were written.
        state = STATE_CODES.get((target.before or {}).get("state", ""))
        after = session.read_guest(uuid, scopes, state=state, with_affinity="vcpupin" in target.desired)
        problems = verify(target.desired, after, scopes)
        if problems:
            raise VerifyError("; ".join(problems))
        return Outcome(True, after)
    except VirtError as exc:
        if exc.unresponsive or not session.alive():
            # The host stopped answering: a restore would not reach it either. It is verified (and settled)
            # the next time the host answers.
            return Outcome(False, error=exc.message, unknown=True)
        error = exc.message
    except VerifyError as exc:
        error = f"verification failed: {exc}"
    return _restore_after(session, target, scopes, error)


def _restore_after(session: HostSession, target: ChangeTarget, scopes: tuple[str, ...], error: str) -> Outcome:
    """Put back what the change touched after it failed, and say whether that worked."""
    uuid = str(target.domain_uuid)
    restore_error = ""
    try:
        session.restore(uuid, undo_snapshot(target), scopes, fields.labels(target.desired))
        leftover = restore_problems(target, session.read_guest(uuid, scopes), scopes)
        if leftover:
            restore_error = "after restoring: " + "; ".join(leftover)
    except VirtError as exc:
        restore_error = exc.message
    return Outcome(False, error=error, restore_error=restore_error)


def rollback_guest(
    session: HostSession, target: ChangeTarget, scopes: tuple[str, ...], later: LaterWrites | None = None
) -> Outcome:
    """Put back, on one changed guest, each field the change wrote that still holds what it wrote; verify it.

    The guest is read first and planned field by field (hosts/changes/rollback.py): a field changed since
    (``later`` says by which request, if one) is a conflict, left alone and reported in ``Outcome.rollback``.
    """
    uuid = str(target.domain_uuid)
    try:
        now = session.read_guest(uuid, scopes, with_affinity=False)
        plan = plan_rollback(target.desired, target.before or {}, now.snapshot_json(), scopes, later)
        live, config = restoring(plan, "live"), restoring(plan, "config")
        if not live and not config:
            return Outcome(True, now, rollback=[item.as_json() for item in plan])
        session.restore_fields(uuid, live, fields.labels(config), (target.before or {}).get("config_xml"))
        after = session.read_guest(uuid, scopes, with_affinity="vcpupin" in live)
        problems = verify(live, after, ("live",), expected="was") if live else []
        problems += verify(config, after, ("config",), expected="was") if config else []
        if problems:
            raise VerifyError("; ".join(problems))
        return Outcome(True, after, rollback=[item.as_json() for item in plan])
    except (VirtError, VerifyError) as exc:
        return Outcome(False, error=exc.message if isinstance(exc, VirtError) else f"verification failed: {exc}")


def settle_guest(session: HostSession, target: ChangeTarget, scopes: tuple[str, ...]) -> Outcome:
    """Settle a guest left unknown when its host stopped answering mid-change, now that it answers.

    If the guest holds everything the change wanted, the change took effect: it is recorded applied.
    Otherwise it is put back as its snapshot found it, like any guest whose change failed.
    """
    uuid = str(target.domain_uuid)
    try:
        now = session.read_guest(uuid, scopes, with_affinity="vcpupin" in target.desired)
    except VirtError as exc:
        return Outcome(False, error=exc.message, unknown=True)
    problems = verify(target.desired, now, scopes)
    if not problems:
        return Outcome(True, now)
    return _restore_after(
        session, target, scopes, "found half-changed when its host answered again: " + "; ".join(problems)
    )
