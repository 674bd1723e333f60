"""The four roles and what each may do.

Roles are Django groups so an admin manages them with the usual tools. A superuser holds every role.
"""

from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, Group
from django.http import HttpRequest

VIEWER, OPERATOR, APPROVER, ADMIN = "viewer", "operator", "approver", "admin"
ROLES = (VIEWER, OPERATOR, APPROVER, ADMIN)
# What each role may do, in the words the users page shows beside it.
ROLE_DESCRIPTIONS = {
    VIEWER: "sees inventory, plans and charts",
    OPERATOR: "drafts profiles and change requests, asks for syncs",
    APPROVER: "approves or rejects other people's change requests, rolls back",
    ADMIN: "manages hosts, their CPU partitions, users and roles",
}


def roles_of(user: AbstractBaseUser | AnonymousUser) -> frozenset[str]:
    """Return the roles a user holds (cached on the user object for the request)."""
    if not user.is_authenticated:
        return frozenset()
    cached = getattr(user, "_isoweb_roles", None)
    if cached is None:
        if getattr(user, "is_superuser", False):
            cached = frozenset(ROLES)
        else:
            cached = frozenset(user.groups.filter(name__in=ROLES).values_list("name", flat=True))  # type: ignore[attr-defined]
        user._isoweb_roles = cached  # type: ignore[union-attr,attr-defined]
    return cached


def can_view(user: AbstractBaseUser | AnonymousUser) -> bool:
    """Every role may see the inventory; a user with no role sees nothing."""
    return bool(roles_of(user))


def can_manage_hosts(user: AbstractBaseUser | AnonymousUser) -> bool:
    return ADMIN in roles_of(user)


def can_manage_users(user: AbstractBaseUser | AnonymousUser) -> bool:
    """Admins create users, give and take roles, deactivate accounts, reset passwords and revoke tokens."""
    return ADMIN in roles_of(user)


def can_sync(user: AbstractBaseUser | AnonymousUser) -> bool:
    """Asking for a fresh sync changes nothing on the hosts; operators and up may."""
    return bool(roles_of(user) & {OPERATOR, APPROVER, ADMIN})


def ensure_role_groups() -> dict[str, Group]:
    """Create the role groups if missing and return them by name."""
    return {name: Group.objects.get_or_create(name=name)[0] for name in ROLES}


def roles_context(request: HttpRequest) -> dict[str, Any]:
    """Template context: what the logged-in user may do, for showing only the buttons that work."""
    user = getattr(request, "user", AnonymousUser())
    roles = roles_of(user)
    return {
        "user_roles": sorted(roles),
        "can_manage_hosts": ADMIN in roles,
        "can_manage_users": ADMIN in roles,
        "can_sync": bool(roles & {OPERATOR, APPROVER, ADMIN}),
        "can_draft": OPERATOR in roles,
        "can_approve": APPROVER in roles,
    }


def can_draft(user: AbstractBaseUser | AnonymousUser) -> bool:
    """Operators draft profiles and change requests."""
    return OPERATOR in roles_of(user)


def can_approve(user: AbstractBaseUser | AnonymousUser) -> bool:
    """Approvers approve, reject and roll back change requests (never their own, see the service)."""
    return APPROVER in roles_of(user)
