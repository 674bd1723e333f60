"""What the page forms share: the monospace input for cpulists and numbers, and showing a service's errors.

A service function names the field of its input it refuses (``name``, ``sched.vcpu_quota``); a view puts
that message next to the form field showing that input, or above the form when no field shows it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from django import forms

MONO = {"class": "mono", "spellcheck": "false", "autocomplete": "off"}


def add_service_errors(
    form: forms.Form,
    errors: Iterable[tuple[str, list[str]]],
    field_for: Callable[[str], str | None] | None = None,
) -> None:
    """Put a service's errors (field path, messages) next to the form fields they concern.

    ``field_for`` maps a path to the field showing it; without it a path is a field's own name.
    """
    for path, messages in errors:
        name = field_for(path) if field_for else (path if path in form.fields else None)
        for message in messages:
            if name is None or name == "content_json":
                form.add_error(name, message if path in message else f"{path}: {message}")
            else:
                form.add_error(name, message)
