"""The audit log page: every recorded action, newest first, filtered like the API's audit events."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from hosts.audit_diff import diff_rows
from hosts.filters import AuditEventFilterSet
from hosts.models import AuditEvent
from hosts.tables import AuditTable
from hosts.views.common import filtered, pretty, tabled, viewer_required


@viewer_required
def audit_list(request: HttpRequest) -> HttpResponse:
    """Show the audit log, newest first, filtered and paginated."""
    queryset = AuditEvent.objects.select_related("actor", "host", "domain", "change_request", "profile").order_by(
        "-created_at", "-id"
    )
    filterset = AuditEventFilterSet(request.GET or None, queryset=queryset)
    rows, status = filtered(request, filterset)
    table = AuditTable(rows)
    status = tabled(request, table, status)
    page = table.page
    events = []
    for e in (row.record for row in page):
        diff, more = diff_rows(e.before, e.after)  # field: old -> new, the raw JSON kept folded beside it
        events.append(
            {
                "event": e,
                "diff": diff,
                "more": more,
                "before": None if e.before is None else pretty(e.before),
                "after": None if e.after is None else pretty(e.after),
            }
        )
    return render(
        request,
        "hosts/audit_list.html",
        {
            "filter": filterset,
            "page": page,
            "table": table,
            "events": events,
            "filtered": any(v for k, v in request.GET.items() if k not in ("sort", "page")),
        },
        status=status,
    )
