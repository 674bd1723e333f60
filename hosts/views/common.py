"""What every page shares: the role each kind of page needs, and showing JSON to a person.

A page's role check is a decorator so the refusal (403 with a sentence saying which role is needed) reads
the same on every page, and an anonymous visitor is sent to the login page instead.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse

from hosts import roles
from hosts.tables import configure

View = Callable[..., HttpResponse]

# Rows per page of the change request list and the audit log.
PER_PAGE = 50


def role_required(check: Callable[[Any], bool], refusal: str) -> Callable[[View], View]:
    """Require a logged-in user for whom ``check`` holds; anyone else logged in gets 403 with ``refusal``."""

    def decorator(view: View) -> View:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not check(request.user):
                raise PermissionDenied(refusal)
            return view(request, *args, **kwargs)

        return login_required(wrapped)

    return decorator


viewer_required = role_required(roles.can_view, "Your account has no isoweb role yet; ask an admin for one.")
sync_required = role_required(roles.can_sync, "Only operators, approvers and admins may ask for a sync.")
draft_required = role_required(roles.can_draft, "Only operators may draft profiles and change requests.")
approve_required = role_required(roles.can_approve, "Only approvers may approve, reject or roll back change requests.")
add_host_required = role_required(roles.can_manage_hosts, "Only admins may add hosts.")
partition_required = role_required(roles.can_manage_hosts, "Only admins may change a host's CPU partition.")


def pretty(value: Any) -> str:
    """Return JSON indented for reading on a page, keys in their stored order."""
    return json.dumps(value, indent=2, sort_keys=False)


def tabled(request: HttpRequest, table: Any, status: int, *, per_page: int = PER_PAGE) -> int:
    """Sort and paginate a list page's table from the query string; a refused ``sort`` or ``page`` is shown as an
    error like a filter's and the page answers 400 (the table then keeps its default order and first page)."""
    for error in configure(table, request, per_page=per_page):
        messages.error(request, error.message)
        status = 400
    return status


def filtered(request: HttpRequest, filterset: Any) -> tuple[QuerySet[Any], int]:
    """Return a list page's rows and status: a filter that does not validate (an unknown choice, an id out of
    range) shows its error, lists nothing and answers 400, as the API does."""
    if filterset.is_bound and not filterset.is_valid():
        for name, errors in filterset.errors.items():
            label = filterset.form.fields[name].label if name in filterset.form.fields else name
            for error in errors:
                messages.error(request, f"{label or name}: {error}")
        return filterset.queryset.none(), 400
    return filterset.qs, 200
