"""Who did it: the acting user an audit row names (None stands for isoweb itself)."""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser, User

Actor = User | AnonymousUser | None


def audit_user(actor: Actor) -> User | None:
    """Return the acting user for the audit row; None stands for the system itself."""
    return actor if isinstance(actor, User) else None
