"""Forms of the users pages: a new user, a user's roles, a new password.

They check the shape of the input only; hosts/accounts.py decides (password rules, unique names, the last
admin) and the view puts its refusals next to these fields.
"""

from __future__ import annotations

from typing import Any

from django import forms

from hosts.roles import ROLE_DESCRIPTIONS, ROLES

ROLE_CHOICES = [(role, f"{role}: {ROLE_DESCRIPTIONS[role]}") for role in ROLES]


class RolesForm(forms.Form):
    """Which roles a user holds (none: the user logs in and sees nothing)."""

    roles = forms.MultipleChoiceField(choices=ROLE_CHOICES, required=False, widget=forms.CheckboxSelectMultiple)


class PasswordForm(forms.Form):
    """A new password, typed twice."""

    password = forms.CharField(
        label="New password",
        strip=False,
        max_length=4096,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )
    password_again = forms.CharField(
        label="New password again",
        strip=False,
        max_length=4096,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if (
            cleaned.get("password")
            and cleaned.get("password_again")
            and cleaned["password"] != cleaned["password_again"]
        ):
            self.add_error("password_again", "The two passwords differ.")
        return cleaned


class UserCreateForm(PasswordForm):
    """A new user: name, e-mail, roles and the initial password."""

    username = forms.CharField(
        label="User name", max_length=150, widget=forms.TextInput(attrs={"autofocus": True, "autocomplete": "off"})
    )
    email = forms.EmailField(label="E-mail", required=False, widget=forms.EmailInput(attrs={"class": "form-control"}))
    roles = RolesForm.base_fields["roles"]

    field_order = ["username", "email", "roles", "password", "password_again"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["password"].label = "Initial password"
        self.fields["password_again"].label = "Initial password again"
