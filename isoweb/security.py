"""Send a Content-Security-Policy header with every answer (Django 5.2 has none built in).

The policy (``settings.ISOWEB_CSP``, from the environment) lets pages run only scripts served by isoweb itself:
no inline ``<script>``, no ``eval``, no other origin, no framing, forms posting only to isoweb. Every template
loads its scripts from ``static/``, which is what makes this possible. ``ISOWEB_CSP_REPORT_ONLY=1`` sends it as
``Content-Security-Policy-Report-Only`` (the browser reports, blocks nothing) to try a changed policy first; an
empty ``ISOWEB_CSP`` sends no header. A view that sets its own policy keeps it.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

DEFAULT_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        # Style attributes only (e.g. a progress bar's initial width); style elements and sheets stay 'self'.
        "style-src-attr 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "connect-src 'self'",  # the API and the live charts' websockets (same host, ws: or wss:)
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


class ContentSecurityPolicyMiddleware:
    """Add the configured Content-Security-Policy (or its report-only form) to every response."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.policy = str(getattr(settings, "ISOWEB_CSP", DEFAULT_POLICY)).strip()
        report_only = bool(getattr(settings, "ISOWEB_CSP_REPORT_ONLY", False))
        self.header = "Content-Security-Policy-Report-Only" if report_only else "Content-Security-Policy"

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if self.policy and "Content-Security-Policy" not in response and self.header not in response:
            response[self.header] = self.policy
        return response
