"""Service functions for pin profiles.

A profile's content is validated before it is stored; a stored revision is never changed, so editing a
profile adds a revision and change requests keep pointing at the exact content that was approved."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from hosts.audit import Actor, audit_user
from hosts.models import AuditEvent, PinProfile, PinProfileRevision
from hosts.planning.schema import validate_profile


@transaction.atomic
def create_profile(*, name: str, description: str, content: Any, actor: Actor) -> PinProfile:
    """Create a profile with its first revision; raises ProfileError or ValidationError, saving nothing."""
    spec = validate_profile(content)
    name = (name or "").strip()
    if not name:
        raise ValidationError({"name": ["Give the profile a name."]})
    if PinProfile.objects.filter(name=name).exists():
        raise ValidationError({"name": [f"A profile named '{name}' already exists."]})
    profile = PinProfile.objects.create(name=name, description=description or "", created_by=audit_user(actor))
    revision = PinProfileRevision.objects.create(
        profile=profile, number=1, content=spec.as_json(), created_by=audit_user(actor)
    )
    AuditEvent.objects.create(
        actor=audit_user(actor),
        action=AuditEvent.Action.PROFILE_CREATE,
        profile=profile,
        object_repr=str(revision),
        after={"name": name, "description": profile.description, "content": revision.content},
    )
    return profile


@transaction.atomic
def revise_profile(
    profile_id: int, *, content: Any, description: str | None = None, comment: str = "", actor: Actor
) -> PinProfileRevision:
    """Add a revision to a profile (the earlier ones stay as they are); raises ProfileError if invalid."""
    spec = validate_profile(content)
    profile = PinProfile.objects.select_for_update().get(pk=profile_id)
    latest = profile.revisions.order_by("-number").first()
    revision = PinProfileRevision.objects.create(
        profile=profile,
        number=(latest.number if latest else 0) + 1,
        content=spec.as_json(),
        comment=comment[:200],
        created_by=audit_user(actor),
    )
    if description is not None and description != profile.description:
        profile.description = description
        profile.save(update_fields=["description"])
    AuditEvent.objects.create(
        actor=audit_user(actor),
        action=AuditEvent.Action.PROFILE_REVISE,
        profile=profile,
        object_repr=str(revision),
        before={"content": latest.content} if latest else None,
        after={"content": revision.content},
        message=comment,
    )
    return revision
