"""Users pages (admins only): the user list, a new user, and one user's roles, status, password and tokens.

Each form posts to a view of its own that calls one service of hosts/accounts.py and returns to the user's
page, with the refusal (last admin, own account, weak password) shown beside the field it concerns.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import update_session_auth_hash
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from hosts import accounts, roles
from hosts.forms.common import add_service_errors
from hosts.forms.users import PasswordForm, RolesForm, UserCreateForm
from hosts.validation import messages_by_field
from hosts.views.common import role_required

users_required = role_required(roles.can_manage_users, "Only admins may see and manage users.")


def _users() -> QuerySet[User]:
    return User.objects.annotate(token_count=Count("auth_token_set", distinct=True)).prefetch_related("groups")


def _render_detail(
    request: HttpRequest,
    user: User,
    *,
    roles_form: RolesForm | None = None,
    password_form: PasswordForm | None = None,
    status_error: str = "",
    status: int = 200,
) -> HttpResponse:
    tokens = accounts.tokens_of(user)
    return render(
        request,
        "hosts/user_detail.html",
        {
            "subject": user,
            "subject_roles": accounts.roles_held(user),
            "roles_form": roles_form or RolesForm(initial={"roles": accounts.roles_held(user)}),
            "password_form": password_form or PasswordForm(),
            "status_error": status_error,
            "tokens": [(token, accounts.token_is_expired(token)) for token in tokens],
            "is_self": user.pk == request.user.pk,
        },
        status=status,
    )


@users_required
def user_list(request: HttpRequest) -> HttpResponse:
    """List every user with their roles, whether they may log in, their last login and token count."""
    rows = [
        (user, [g.name for g in user.groups.all() if g.name in roles.ROLES]) for user in _users().order_by("username")
    ]
    return render(request, "hosts/user_list.html", {"rows": rows})


@users_required
@require_http_methods(["GET", "POST"])
def user_create(request: HttpRequest) -> HttpResponse:
    """Create a user with roles and an initial password."""
    form = UserCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user = accounts.create_user(
                username=form.cleaned_data["username"],
                email=form.cleaned_data["email"],
                roles=form.cleaned_data["roles"],
                password=form.cleaned_data["password"],
                actor=request.user,
            )
        except ValidationError as exc:
            add_service_errors(form, messages_by_field(exc).items())
        else:
            messages.success(request, f"User {user.username} created.")
            return redirect("hosts:user-detail", pk=user.pk)
    return render(request, "hosts/user_create.html", {"form": form}, status=400 if form.errors else 200)


@users_required
def user_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """Show one user: roles, status, last login, password reset and API tokens."""
    return _render_detail(request, get_object_or_404(User, pk=pk))


@users_required
@require_POST
def user_roles(request: HttpRequest, pk: int) -> HttpResponse:
    """Give a user exactly the roles ticked."""
    user = get_object_or_404(User, pk=pk)
    form = RolesForm(request.POST)
    if form.is_valid():
        try:
            accounts.set_roles(user, form.cleaned_data["roles"], actor=request.user)
        except ValidationError as exc:
            add_service_errors(form, messages_by_field(exc).items())
        else:
            messages.success(request, f"Roles of {user.username} saved.")
            return redirect("hosts:user-detail", pk=user.pk)
    return _render_detail(request, user, roles_form=form, status=400)


@users_required
@require_POST
def user_active(request: HttpRequest, pk: int) -> HttpResponse:
    """Deactivate (``active=0``) or reactivate (``active=1``) a user."""
    user = get_object_or_404(User, pk=pk)
    wanted = request.POST.get("active")
    if wanted not in ("0", "1"):
        return _render_detail(request, user, status_error="active: say 0 (deactivate) or 1 (reactivate).", status=400)
    if wanted == "1":
        accounts.reactivate_user(user, actor=request.user)
        messages.success(request, f"{user.username} may log in again.")
        return redirect("hosts:user-detail", pk=user.pk)
    try:
        revoked = accounts.deactivate_user(user, actor=request.user)
    except ValidationError as exc:
        return _render_detail(request, user, status_error=" ".join(exc.messages), status=400)
    messages.success(request, f"{user.username} deactivated; {revoked} API token(s) revoked.")
    return redirect("hosts:user-detail", pk=user.pk)


@users_required
@require_POST
def user_password(request: HttpRequest, pk: int) -> HttpResponse:
    """Set a new password for a user (their sessions end and their API tokens are revoked)."""
    user = get_object_or_404(User, pk=pk)
    form = PasswordForm(request.POST)
    if form.is_valid():
        try:
            revoked = accounts.reset_password(user, form.cleaned_data["password"], actor=request.user)
        except ValidationError as exc:
            add_service_errors(form, messages_by_field(exc).items())
        else:
            if user.pk == request.user.pk:
                update_session_auth_hash(request, user)  # an admin resetting their own password stays logged in
            messages.success(request, f"Password of {user.username} reset; {revoked} API token(s) revoked.")
            return redirect("hosts:user-detail", pk=user.pk)
    return _render_detail(request, user, password_form=form, status=400)


@users_required
@require_POST
def user_token_revoke(request: HttpRequest, pk: int, key: str) -> HttpResponse:
    """Revoke one of a user's API tokens."""
    user = get_object_or_404(User, pk=pk)
    if accounts.revoke_tokens(user, actor=request.user, key=key):
        messages.success(request, f"API token {key[: accounts.TOKEN_SHOWN]}… of {user.username} revoked.")
    else:
        messages.error(request, f"{user.username} has no API token with key {key[:20]}.")
    return redirect("hosts:user-detail", pk=user.pk)


@users_required
@require_POST
def user_tokens_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    """Revoke every API token of a user."""
    user = get_object_or_404(User, pk=pk)
    revoked = accounts.revoke_tokens(user, actor=request.user)
    messages.success(request, f"{revoked} API token(s) of {user.username} revoked.")
    return redirect("hosts:user-detail", pk=user.pk)
