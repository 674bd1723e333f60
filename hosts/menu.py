"""What the main menu says about the logged-in user: how many change requests wait for their approval.

An approver sees the count beside "Change requests" on every page, so work waiting for them is never hidden
behind a click. It costs one query per request (none for anyone who cannot approve), remembered on the request
so a page that renders the menu twice does not ask again.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from hosts import roles
from hosts.models import ChangeRequest

_CACHE_ATTRIBUTE = "_isoweb_waiting_for_approval"


def waiting_for_approval(request: HttpRequest) -> int | None:
    """Return how many pending requests the user may decide (not their own), or None if they cannot approve."""
    if hasattr(request, _CACHE_ATTRIBUTE):
        return getattr(request, _CACHE_ATTRIBUTE)  # type: ignore[no-any-return]
    user = getattr(request, "user", None)
    count: int | None = None
    if user is not None and roles.can_approve(user):
        count = (
            ChangeRequest.objects.filter(status=ChangeRequest.Status.PENDING).exclude(requested_by_id=user.pk).count()
        )
    setattr(request, _CACHE_ATTRIBUTE, count)
    return count


def menu_context(request: HttpRequest) -> dict[str, Any]:
    """Template context: ``waiting_for_approval`` (a number for approvers, else None)."""
    return {"waiting_for_approval": waiting_for_approval(request)}
