"""Compute and store each guest's desired state from its change requests in force.

The shape, the rules and the stable entry point are documented in hosts/desired.py, which re-exports this
module's functions for readers outside the change workflow (drift detection); the change workflow itself
(outcomes, engine, rollback preview) imports this module, so nothing here points back up at hosts/desired.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.db.models import F

from hosts.changes import fields
from hosts.changes.rollback import LaterWrites
from hosts.models import ChangeTarget, Domain
from hosts.models.rows import update_rows
from hosts.vocabulary import SCOPE_PARTS

SCOPES = ("live", "config")

# A request in force on a guest: its scope and the values it wrote, oldest first.
InForce = tuple[str, dict[str, Any]]


def merge_desired(in_force: Iterable[InForce]) -> dict[str, dict[str, Any]]:
    """Return the desired state from the requests in force on one guest, oldest first (later ones win)."""
    out: dict[str, dict[str, Any]] = {scope: {} for scope in SCOPES}
    for scope, desired in in_force:
        for part in SCOPE_PARTS.get(scope, ()):
            for label in fields.labels(desired):
                fields.put(out[part], label, fields.value(desired, label))
    return out


def _in_force(domain_ids: Iterable[int]) -> Any:
    return (
        ChangeTarget.objects.filter(domain_id__in=list(domain_ids), status=ChangeTarget.Status.APPLIED)
        .order_by(F("started_at").asc(nulls_first=True), "change_request_id", "pk")
        .values_list("pk", "domain_id", "change_request_id", "change_request__scope", "desired")
    )


@transaction.atomic
def refresh_desired_state(domain_ids: Iterable[int | None]) -> None:
    """Recompute and store the desired state of these guests from their change requests in force."""
    ids = sorted({pk for pk in domain_ids if pk is not None})
    if not ids:
        return
    per_domain: dict[int, list[InForce]] = {pk: [] for pk in ids}
    for _pk, domain_id, _cr_id, scope, desired in _in_force(ids):
        per_domain[domain_id].append((scope, desired or {}))
    # One UPDATE per guest (a guest deleted meanwhile matches no row).
    update_rows([Domain(pk=pk, desired_state=merge_desired(per_domain[pk])) for pk in ids], ["desired_state"])


def later_writes(targets: Iterable[ChangeTarget]) -> dict[int, LaterWrites]:
    """For each target, who set each of its guest's fields after it: ``{(scope, field): (cr_id, value)}``.

    Only requests in force that wrote their guest later than the target count (the latest one per field);
    a rollback uses it to say which change request a conflicting value came from.
    """
    targets = [t for t in targets if t.domain_id is not None]
    rows = list(_in_force({t.domain_id for t in targets if t.domain_id is not None}))
    order = {pk: index for index, (pk, *_rest) in enumerate(rows)}
    out: dict[int, LaterWrites] = {}
    for target in targets:
        mine = order.get(target.pk)
        writes: LaterWrites = {}
        for index, (pk, domain_id, cr_id, scope, desired) in enumerate(rows):
            later = index > mine if mine is not None else cr_id > target.change_request_id
            if domain_id != target.domain_id or pk == target.pk or not later:
                continue
            for part in SCOPE_PARTS.get(scope, ()):
                for label in fields.labels(desired or {}):
                    writes[(part, label)] = (cr_id, fields.value(desired, label))
        out[target.pk] = writes
    return out
