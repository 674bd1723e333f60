"""The interactive API documentation page: Swagger UI over the OpenAPI schema drf-spectacular serves."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse

from hosts.views.common import viewer_required


@viewer_required
def api_docs(request: HttpRequest) -> HttpResponse:
    """Show every endpoint of the REST API, with "try it out" in the user's own session."""
    return render(request, "api_docs.html", {"schema_url": reverse("api:schema")})
