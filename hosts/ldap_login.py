"""LDAP login (optional, on when ``ISOWEB_LDAP_URI`` is set): directory users log in, their groups give roles.

django-auth-ldap checks the password against the directory and creates or refreshes the Django user; this
backend then makes the user's roles exactly those their directory groups map to (``ISOWEB_LDAP_ROLE_GROUPS``),
at every login, so someone removed from a group loses the role the next time they log in. Deactivating a
directory user in isoweb still holds: they are refused at login and their open sessions end.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ImproperlyConfigured
from django_auth_ldap.backend import LDAPBackend

from hosts.accounts import follow_directory_roles
from hosts.roles import ROLES


def role_groups(text: str) -> dict[str, str]:
    """Parse ``role=group DN;role=group DN`` into {role: lower-cased DN}; refuse unknown roles and empty DNs."""
    mapping: dict[str, str] = {}
    for part in text.split(";"):
        if not part.strip():
            continue
        role, sep, dn = part.partition("=")
        role, dn = role.strip(), dn.strip()
        if not sep or role not in ROLES or not dn:
            raise ImproperlyConfigured(
                f"ISOWEB_LDAP_ROLE_GROUPS: {part.strip()!r} is not role=group DN with a role among {', '.join(ROLES)}"
            )
        mapping[role] = dn.lower()
    return mapping


class RoleMappingLDAPBackend(LDAPBackend):
    """django-auth-ldap's backend, with roles from groups and no way in for a deactivated user."""

    def authenticate_ldap_user(self, ldap_user: Any, password: str) -> User | None:
        existed = User.objects.filter(username__iexact=ldap_user._username).exists()
        user = super().authenticate_ldap_user(ldap_user, password)
        if user is None or not user.is_active:
            return None
        groups = {dn.lower() for dn in ldap_user.group_dns}
        mapping = role_groups(settings.ISOWEB_LDAP_ROLE_GROUPS)
        follow_directory_roles(user, [role for role, dn in mapping.items() if dn in groups], created=not existed)
        return user  # type: ignore[no-any-return]

    def get_user(self, user_id: int) -> User | None:
        user = super().get_user(user_id)
        return user if user is not None and user.is_active else None
