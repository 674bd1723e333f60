"""Preview a profile's plan for guests: the one place the page, the API and a new change request plan it.

A preview validates the profile content, loads the guests with their hosts, plans the content for them and
turns each guest's plan into the rows a person reads (desired values, the diff per scope, errors, warnings).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError

from hosts.models import Domain
from hosts.planning.plans import TargetPlan, plan_for_domains
from hosts.planning.schema import ProfileSpec, validate_profile


@dataclass(frozen=True)
class PlanPreview:
    """A plan for some guests: the validated profile, each guest's plan, and the rows shown for them."""

    spec: ProfileSpec
    targets: list[TargetPlan]
    rows: list[dict[str, Any]]

    @property
    def ok(self) -> bool:
        """Whether no guest's plan has an error (warnings are allowed)."""
        return all(t.ok for t in self.targets)


def plan_rows(targets: Sequence[TargetPlan]) -> list[dict[str, Any]]:
    """Return each guest's plan as the row the pages, the API and the audit log show."""
    return [
        {
            "domain": t.domain.pk,
            "name": t.domain.name,
            "host": t.domain.host.name,
            "desired": t.plan.desired,
            "diff": t.diff,
            "errors": [i.as_json() for i in t.plan.errors],
            "warnings": [i.as_json() for i in t.plan.warnings],
        }
        for t in targets
    ]


def load_guests(domain_ids: Iterable[int], *, refuse_stale: bool = False) -> list[Domain]:
    """Return the guests with their hosts, each once, in the order asked.

    Raises ValidationError naming the unknown guests, and with ``refuse_stale`` the guests whose host is down,
    since their tuning is then not known.
    """
    ids = list(dict.fromkeys(int(i) for i in domain_ids))
    domains = {d.pk: d for d in Domain.objects.filter(pk__in=ids).select_related("host")}
    missing = [i for i in ids if i not in domains]
    if missing:
        raise ValidationError({"domains": [f"No such guest: {', '.join(map(str, missing))}."]})
    stale = [d.name for d in domains.values() if d.is_stale]
    if refuse_stale and stale:
        raise ValidationError({"domains": [f"The host of {', '.join(stale)} is down; its state is not known."]})
    return [domains[i] for i in ids]


def preview_plan(content: Any, domain_ids: Iterable[int], scope: str, *, refuse_stale: bool = False) -> PlanPreview:
    """Validate profile content and plan it for guests, recording nothing.

    Raises ValidationError for unknown (or, with ``refuse_stale``, stale) guests and ProfileError for invalid
    content; a plan with errors for some guests is returned, not raised, so every guest's plan can be shown.
    """
    guests = load_guests(domain_ids, refuse_stale=refuse_stale)
    spec = validate_profile(content)
    targets = plan_for_domains(spec, guests, scope)
    return PlanPreview(spec=spec, targets=targets, rows=plan_rows(targets))
