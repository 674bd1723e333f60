"""Users, their roles and their API tokens: every change to them, audited.

Service functions in Zulip's manner: atomic, the acting user keyword-only, the audit row written in the same
transaction. Pages and the API validate their input and call one of these. Two rules keep the product from
locking its admins out: nobody deactivates their own account, and the last active admin can neither lose the
role nor be deactivated (the admin group's row is locked while that is checked, so two admins demoting each
other at once cannot both succeed). A refusal is a ``ValidationError`` naming the field it concerns; nothing changes.

API tokens are django-rest-knox tokens: the secret is shown once, only its SHA-512 digest is stored, and each
expires (``REST_KNOX["TOKEN_TTL"]``). A token is named by its ``token_key``, the first 15 characters of the
secret, which knox stores in clear to find the digest; the audit log, readable by every role, shows 8.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import Group, User
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from knox.models import AuthToken

from hosts.audit import Actor, audit_user
from hosts.models import AuditEvent
from hosts.roles import ADMIN, ROLES, ensure_role_groups

Action = AuditEvent.Action
TOKEN_SHOWN = 8  # characters of a token's key shown in the audit log


@dataclass(frozen=True)
class IssuedToken:
    """A new API token: its row and the secret, which exists nowhere else once this is dropped."""

    token: AuthToken
    secret: str


def roles_held(user: User) -> list[str]:
    """Return the roles granted to a user through their groups, in the product's order."""
    names = set(user.groups.filter(name__in=ROLES).values_list("name", flat=True))
    return [role for role in ROLES if role in names]


def clean_roles(roles: Iterable[str]) -> list[str]:
    """Return the roles in the product's order; refuse a name that is not a role."""
    wanted = set(roles)
    unknown = sorted(wanted - set(ROLES))
    if unknown:
        raise ValidationError({"roles": [f"Unknown role {name!r}; roles are {', '.join(ROLES)}." for name in unknown]})
    return [role for role in ROLES if role in wanted]


def _check_password(password: str, user: User) -> None:
    try:
        validate_password(password, user=user)
    except ValidationError as exc:
        raise ValidationError({"password": exc.messages}) from exc


def _active_admin_ids() -> set[int]:
    """Return the active admins' ids, with the admin group's row locked until the transaction ends.

    Every change that can take the role away goes through here first, so two admins demoting each other wait
    for one another; the ids are read by a statement that starts after the lock is held, so (on PostgreSQL's
    read committed) they include what the other transaction committed. SQLite serialises writers anyway.
    """
    Group.objects.select_for_update().get_or_create(name=ADMIN)
    admins = User.objects.filter(Q(is_superuser=True) | Q(groups__name=ADMIN), is_active=True)
    return set(admins.values_list("pk", flat=True))


def _refuse_last_admin(user: User, why: str) -> None:
    if _active_admin_ids() == {user.pk}:
        raise ValidationError({"roles": [f"{user.username} is the last active admin: {why}"]})


def _audit(actor: Actor, action: str, user: User, before: Any = None, after: Any = None, message: str = "") -> None:
    AuditEvent.objects.create(
        actor=audit_user(actor),
        action=action,
        object_repr=f"user {user.username}",
        before=before,
        after=after,
        message=message,
    )


def _set_role_groups(user: User, roles: list[str]) -> None:
    """Give the user exactly these role groups, leaving any other group they are in alone."""
    groups = ensure_role_groups()
    user.groups.remove(*(groups[name] for name in ROLES if name not in roles))
    user.groups.add(*(groups[name] for name in roles))
    user.__dict__.pop("_isoweb_roles", None)


@transaction.atomic
def create_user(*, username: str, password: str, roles: Iterable[str], email: str = "", actor: Actor) -> User:
    """Create a user with these roles and an initial password (validated by Django's password validators)."""
    username = username.strip()
    candidate = User(username=username, email=email.strip())
    try:
        candidate.full_clean(exclude=["password"])
    except ValidationError as exc:
        raise ValidationError({k: v for k, v in exc.message_dict.items() if k in ("username", "email")}) from exc
    if User.objects.filter(username__iexact=username).exists():
        raise ValidationError({"username": [f"A user named {username!r} already exists."]})
    wanted = clean_roles(roles)
    _check_password(password, candidate)
    user = User.objects.create_user(username, email=candidate.email, password=password)
    _set_role_groups(user, wanted)
    _audit(actor, Action.USER_CREATE, user, after={"username": username, "email": user.email, "roles": wanted})
    return user


@transaction.atomic
def set_roles(user: User, roles: Iterable[str], *, actor: Actor) -> list[str]:
    """Give a user exactly these roles; the last active admin keeps the admin role."""
    wanted = clean_roles(roles)
    before = roles_held(user)
    if wanted == before:
        return wanted
    if ADMIN in before and ADMIN not in wanted and user.is_active and not user.is_superuser:
        _refuse_last_admin(user, "give another user the admin role first.")
    _set_role_groups(user, wanted)
    _audit(actor, Action.USER_UPDATE, user, before={"roles": before}, after={"roles": wanted})
    return wanted


@transaction.atomic
def deactivate_user(user: User, *, actor: Actor) -> int:
    """Stop a user from logging in and revoke their API tokens; return how many tokens were revoked.

    Their open sessions end at their next request (Django refuses inactive users' sessions) and their tokens
    are deleted. Nobody deactivates themselves; the last active admin stays.
    """
    if audit_user(actor) is not None and audit_user(actor) == user:
        raise ValidationError({"is_active": ["You cannot deactivate your own account."]})
    if not user.is_active:
        return 0
    _refuse_last_admin(user, "give another user the admin role before deactivating this one.")
    user.is_active = False
    user.save(update_fields=["is_active"])
    revoked = _delete_tokens(user)
    _audit(actor, Action.USER_DEACTIVATE, user, before={"is_active": True}, after={"is_active": False, **revoked})
    return len(revoked["tokens_revoked"])


@transaction.atomic
def reactivate_user(user: User, *, actor: Actor) -> None:
    """Let a deactivated user log in again (with the roles and password they had)."""
    if user.is_active:
        return
    user.is_active = True
    user.save(update_fields=["is_active"])
    _audit(actor, Action.USER_UPDATE, user, before={"is_active": False}, after={"is_active": True})


@transaction.atomic
def reset_password(user: User, password: str, *, actor: Actor) -> int:
    """Set a new password and revoke the user's API tokens; return how many were revoked.

    A reset usually means the old password is known to someone else, so what it gave access to ends too:
    the user's sessions (Django ties them to the password hash) and tokens. The password is never audited.
    """
    _check_password(password, user)
    user.set_password(password)
    user.save(update_fields=["password"])
    revoked = _delete_tokens(user)
    _audit(actor, Action.USER_PASSWORD, user, after=revoked)
    return len(revoked["tokens_revoked"])


def tokens_of(user: User) -> list[AuthToken]:
    """Return a user's API tokens, newest first (expired ones included until they are used or revoked)."""
    return list(AuthToken.objects.filter(user=user).order_by("-created"))


def token_is_expired(token: AuthToken) -> bool:
    return token.expiry is not None and token.expiry <= timezone.now()


def _token_summary(token: AuthToken) -> dict[str, Any]:
    return {
        "token": token.token_key[:TOKEN_SHOWN],
        "created": token.created.isoformat() if token.created else None,
        "expiry": token.expiry.isoformat() if token.expiry else None,
    }


def _delete_tokens(user: User, key: str | None = None) -> dict[str, list[dict[str, Any]]]:
    tokens = AuthToken.objects.filter(user=user)
    if key is not None:
        tokens = tokens.filter(token_key=key)
    summaries = [_token_summary(token) for token in tokens]
    tokens.delete()
    return {"tokens_revoked": summaries}


@transaction.atomic
def issue_token(user: User, *, actor: Actor) -> IssuedToken:
    """Create an API token for a user; the secret in the result is the only copy."""
    token, secret = AuthToken.objects.create(user=user)
    AuditEvent.objects.create(
        actor=audit_user(actor),
        action=Action.TOKEN_CREATE,
        object_repr=f"API token {token.token_key[:TOKEN_SHOWN]}… of {user.username}",
        after=_token_summary(token),
    )
    return IssuedToken(token=token, secret=secret)


@transaction.atomic
def revoke_token(token: AuthToken, *, actor: Actor) -> None:
    """Revoke one token (e.g. the one a script is logging out with)."""
    summary = _token_summary(token)
    AuthToken.objects.filter(digest=token.digest).delete()
    AuditEvent.objects.create(
        actor=audit_user(actor),
        action=Action.TOKEN_REVOKE,
        object_repr=f"API token {summary['token']}… of {token.user.username}",
        before={"tokens_revoked": [summary]},
    )


@transaction.atomic
def revoke_tokens(user: User, *, actor: Actor, key: str | None = None) -> int:
    """Revoke one of a user's tokens (by its key) or all of them; return how many were revoked."""
    revoked = _delete_tokens(user, key)
    count = len(revoked["tokens_revoked"])
    if count:
        which = f"API token {revoked['tokens_revoked'][0]['token']}…" if key is not None else f"{count} API token(s)"
        AuditEvent.objects.create(
            actor=audit_user(actor),
            action=Action.TOKEN_REVOKE,
            object_repr=f"{which} of {user.username}",
            before=revoked,
        )
    return count


@transaction.atomic
def follow_directory_roles(user: User, roles: Iterable[str], *, created: bool) -> None:
    """Make a directory (LDAP) user's roles those their groups give, at each login; audited as isoweb's doing.

    The directory is the authority for its users, so the last-admin rule does not hold here: removing the
    last admin from the admins' group removes the role.
    """
    wanted = clean_roles(roles)
    if created:
        _set_role_groups(user, wanted)
        _audit(
            None,
            Action.USER_CREATE,
            user,
            after={"username": user.username, "roles": wanted},
            message="first LDAP login",
        )
        return
    before = roles_held(user)
    if before != wanted:
        _set_role_groups(user, wanted)
        _audit(
            None,
            Action.USER_UPDATE,
            user,
            before={"roles": before},
            after={"roles": wanted},
            message="roles from LDAP groups at login",
        )
