"""The server error page, drawn with the menu even though nothing about the request can be trusted.

Django's own handler renders ``500.html`` with an empty context; this one adds only ``menu_always`` so the
page keeps the main menu (plain links, no user name, no counts). It touches neither the database nor the
request, either of which may be what failed.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponseServerError
from django.template import loader


def server_error(request: HttpRequest) -> HttpResponseServerError:
    """Answer 500 with the styled error page."""
    return HttpResponseServerError(loader.get_template("500.html").render({"menu_always": True}))
