"""Read a Django ValidationError as messages per field, for the pages and the API alike.

Service functions raise ``ValidationError`` either naming fields (``{"name": [...]}``) or not; the pages put
the messages next to their form fields and the API answers with them, so both read them through here.
"""

from __future__ import annotations

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError


def messages_by_field(exc: ValidationError, *, unnamed: str = NON_FIELD_ERRORS) -> dict[str, list[str]]:
    """Return the error's messages keyed by field; messages that name no field go under ``unnamed``.

    The pages keep Django's ``__all__`` for those, the API answers them as ``detail`` like DRF does.
    """
    if hasattr(exc, "error_dict"):
        return dict(exc.message_dict)
    return {unnamed: exc.messages}
