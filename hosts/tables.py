"""The list pages' tables (django-tables2): their columns, what each sorts by, and reading ?sort= and ?page=.

A table only draws rows its view already filtered with the API's filterset (hosts/filters.py). Sorting and
paging come from the query string and are checked like a filter: an unknown column or a page that is not a
positive whole number is an error naming the parameter (the page answers 400), never silently ignored and
never a 500. Rows per page are fixed, so no query string can ask for a million rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import django_tables2 as tables
from django.core.paginator import EmptyPage
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from hosts.models import AuditEvent, ChangeRequest, Domain, Host, PinProfile
from hosts.moments import ago

TEMPLATE = "hosts/_table.html"
# Columns a phone can do without (shown from Bootstrap's md breakpoint, 768 px, up): the row's link and its
# essentials stay on screen, the rest is one sideways scroll away on a desktop-sized table.
WIDE_ONLY = {"th": {"class": "d-none d-md-table-cell"}, "td": {"class": "d-none d-md-table-cell"}}
PER_PAGE = 50
# A change request names at most this many of its guests in the list; the rest are counted.
GUESTS_NAMED = 3


@dataclass(frozen=True)
class TableError:
    """A query-string parameter the table could not use, with the sentence to show."""

    field: str
    message: str


def configure(table: tables.Table, request: HttpRequest, *, per_page: int = PER_PAGE) -> list[TableError]:
    """Sort and paginate ``table`` from ``?sort=`` and ``?page=``; return what was refused (already not applied).

    ``sort`` takes an orderable column's name, ``-`` in front to reverse it. ``page`` is a whole number from 1;
    past the last page shows the last page (rows may have gone since the link was made).
    """
    errors: list[TableError] = []
    table.request = request
    sort = request.GET.get(table.order_by_field, "")
    if sort:
        orderable = [c.name for c in table.columns if c.orderable]
        if sort.removeprefix("-") in orderable:
            table.order_by = sort
        else:
            errors.append(
                TableError(
                    "sort", f"Sort: there is no column {sort!r} to sort by; choose one of {', '.join(orderable)}."
                )
            )
    page_text = request.GET.get(table.page_field, "1").strip() or "1"
    page = int(page_text) if page_text.isascii() and page_text.isdigit() and len(page_text) < 10 else 0
    if page < 1:
        errors.append(TableError("page", f"Page: {page_text!r} is not a page number (1, 2, ...)."))
        page = 1
    try:
        table.paginate(page=page, per_page=per_page)
    except EmptyPage:
        table.paginate(page=table.paginator.num_pages or 1, per_page=per_page)
    return errors


def _when(value: Any) -> str:
    """A past time as "5 minutes ago", with the exact time in the user's zone on hover; "never" without one."""
    if not value:
        return mark_safe('<span class="muted">never</span>')
    return ago(value)  # type: ignore[no-any-return]


class IsowebTable(tables.Table):
    """What every list shares: our template, Bootstrap's table classes, a name per table for tests and CSS."""

    class Meta:
        template_name = TEMPLATE
        attrs = {"class": "table table-sm align-top"}
        order_by_field = "sort"
        page_field = "page"


class HostTable(IsowebTable):
    """The host list: name, URI, transport, status, size, guests, last sync and error, and a sync button."""

    name = tables.Column(verbose_name="Name", linkify=True, attrs={"td": {"class": "text-nowrap"}})
    uri = tables.Column(
        verbose_name="URI",
        orderable=False,
        attrs={"th": WIDE_ONLY["th"], "td": {"class": "cell-list d-none d-md-table-cell"}},
    )
    transport = tables.Column(verbose_name="Transport", attrs=WIDE_ONLY)
    status = tables.Column(verbose_name="Status", order_by=("status", "name"))
    cpu_count = tables.Column(verbose_name="CPUs", attrs={"th": {"class": "num"}, "td": {"class": "num"}})
    cell_count = tables.Column(
        verbose_name="NUMA cells",
        attrs={"th": {"class": "num d-none d-md-table-cell"}, "td": {"class": "num d-none d-md-table-cell"}},
    )
    domain_count = tables.Column(verbose_name="Guests", attrs={"th": {"class": "num"}, "td": {"class": "num"}})
    last_sync_at = tables.Column(verbose_name="Last sync", empty_values=())
    last_error = tables.Column(
        verbose_name="Last error", orderable=False, empty_values=(), attrs={"td": {"class": "cell-reason"}}
    )
    actions = tables.TemplateColumn(
        template_code='{% include "hosts/_sync_button.html" with host=record %}',
        verbose_name=mark_safe('<span class="visually-hidden">Actions</span>'),
        orderable=False,
    )

    class Meta(IsowebTable.Meta):
        model = Host
        fields = (
            "name",
            "uri",
            "transport",
            "status",
            "cpu_count",
            "cell_count",
            "domain_count",
            "last_sync_at",
            "last_error",
        )
        order_by = "name"
        attrs = {"class": "table table-sm align-top", "id": "host-table"}

    def render_name(self, value: str) -> str:
        return format_html("<strong>{}</strong>", value)

    def render_uri(self, value: str) -> str:
        return format_html("<code>{}</code>", value)

    def render_transport(self, record: Host) -> str:
        if record.is_encrypted:
            label = str(record.get_transport_display())
        else:
            label = mark_safe(
                'TCP <span class="badge warn" title="Traffic to this host, including guest control, is not encrypted">'
                "unencrypted</span>"
            )
        if record.allow_unverified:  # an admin's override: the host's certificate or SSH key is not checked
            return format_html(
                '{} <span class="badge warn" data-flag="unverified" title="Identity not checked: {}">unverified</span>',
                label,
                record.unverified_reason,
            )
        return label

    def render_status(self, record: Host) -> str:
        return render_to_string("hosts/_status.html", {"host": record})

    def render_domain_count(self, record: Host, value: int) -> str:
        return format_html('<a href="{}?host={}">{}</a>', reverse("hosts:domain-list"), record.pk, value)

    def render_last_sync_at(self, value: Any) -> str:
        return _when(value)

    def render_last_error(self, value: str) -> str:
        if not value:
            return mark_safe('<span class="muted">none</span>')
        return format_html('<span class="error-text">{}</span>', value)


class DomainTable(IsowebTable):
    """The guest list across hosts: host, name, state, vCPUs, placement, emulatorpin, freshness."""

    host = tables.Column(verbose_name="Host", accessor="host__name", order_by=("host__name", "name"))
    name = tables.Column(verbose_name="Name", order_by=("name", "host__name"))
    state = tables.Column(verbose_name="State", order_by=("state", "host__name", "name"))
    vcpus = tables.Column(
        verbose_name="vCPUs",
        accessor="vcpus_current",
        order_by=("vcpus_current", "vcpus_max", "host__name", "name"),
        attrs={"th": {"class": "num"}, "td": {"class": "num"}},
    )
    placement = tables.Column(verbose_name="Placement", orderable=False, attrs=WIDE_ONLY)
    emulatorpin = tables.Column(verbose_name="emulatorpin", orderable=False, empty_values=(), attrs=WIDE_ONLY)
    freshness = tables.Column(verbose_name="Freshness", orderable=False, empty_values=())

    class Meta(IsowebTable.Meta):
        order_by = "host"
        attrs = {"class": "table table-sm align-top", "id": "guest-table"}

    def render_host(self, record: Domain) -> str:
        return format_html('<a href="{}">{}</a>', record.host.get_absolute_url(), record.host.name)

    def render_name(self, record: Domain) -> str:
        return format_html('<a href="{}"><strong>{}</strong></a>', record.get_absolute_url(), record.name)

    def render_state(self, record: Domain) -> str:
        return format_html('<span class="state state-{}">{}</span>', record.state, record.get_state_display())

    def render_vcpus(self, record: Domain) -> str:
        return f"{record.vcpus_current}/{record.vcpus_max}"

    def render_placement(self, record: Domain) -> str:
        return str(record.get_placement_display())

    def render_emulatorpin(self, record: Domain) -> str:
        if record.tuning_live:
            return format_html("<code>{}</code>", record.tuning_live.get("emulatorpin") or "—")
        if record.tuning_config:
            return format_html(
                '<code>{}</code> <span class="tag tag-config">config</span>',
                record.tuning_config.get("emulatorpin") or "—",
            )
        return "—"

    def render_freshness(self, record: Domain) -> str:
        if record.is_stale or record.host.status != Host.Status.UP:
            return mark_safe(
                '<span class="badge warn" title="The host did not answer the last sync; this is the last known state">'
                "stale</span>"
            )
        return mark_safe('<span class="muted">current</span>')


class ChangeRequestTable(IsowebTable):
    """The change request list: what, where (hosts and guests), why, who, how old, and its state."""

    id = tables.Column(verbose_name="Request", linkify=True)
    profile = tables.Column(
        verbose_name="Profile",
        accessor="profile_revision__profile__name",
        order_by=("profile_revision__profile__name", "-created_at"),
    )
    status = tables.Column(verbose_name="Status", order_by=("status", "-created_at"))
    scope = tables.Column(verbose_name="Scope", order_by=("scope", "-created_at"), attrs=WIDE_ONLY)
    hosts = tables.Column(
        verbose_name="Hosts",
        accessor="host_count",
        order_by=("host_count", "-created_at"),
        attrs={"td": {"class": "cell-list"}},
    )
    guests = tables.Column(
        verbose_name="Guests",
        accessor="guest_count",
        order_by=("guest_count", "-created_at"),
        attrs={"td": {"class": "cell-list"}},
    )
    reason = tables.Column(verbose_name="Reason", orderable=False, attrs={"td": {"class": "cell-reason"}})
    requested_by = tables.Column(
        verbose_name="Requested by",
        accessor="requested_by__username",
        order_by=("requested_by__username", "-created_at"),
    )
    age = tables.Column(verbose_name="Age", accessor="created_at", order_by=("-created_at", "-id"))
    decided_by = tables.Column(
        verbose_name="Decided by",
        attrs=WIDE_ONLY,
        accessor="decided_by__username",
        default="—",
        order_by=("decided_by__username", "-created_at"),
    )

    class Meta(IsowebTable.Meta):
        order_by = "age"
        attrs = {"class": "table table-sm align-top", "id": "change-table"}

    def render_id(self, value: int) -> str:
        return format_html("<strong>CR-{}</strong>", value)

    def render_profile(self, record: ChangeRequest) -> str:
        profile = record.profile_revision.profile
        return format_html(
            '<a href="{}">{}</a> <span class="muted">r{}</span>',
            profile.get_absolute_url(),
            profile.name,
            record.profile_revision.number,
        )

    def render_status(self, record: ChangeRequest) -> str:
        return render_to_string(
            "hosts/change_status.html", {"status": record.status, "label": record.get_status_display()}
        )

    def render_scope(self, record: ChangeRequest) -> str:
        return str(record.get_scope_display())

    def render_hosts(self, record: ChangeRequest) -> str:
        names = sorted({t.host.name for t in record.targets.all()})
        return format_html_join(", ", "{}", ((n,) for n in names)) or "—"

    def render_guests(self, record: ChangeRequest) -> str:
        names = sorted(t.domain_name for t in record.targets.all())
        shown = format_html_join(", ", "{}", ((n,) for n in names[:GUESTS_NAMED]))
        more = len(names) - GUESTS_NAMED
        if more > 0:
            return format_html('{} <span class="muted">and {} more</span>', shown, more)
        return shown or "—"

    def render_reason(self, value: str) -> str:
        text = " ".join(value.split())
        if len(text) > 140:
            return format_html('<span title="{}">{}…</span>', text, text[:139])
        return text

    def render_age(self, value: Any) -> str:
        return _when(value)


class ProfileTable(IsowebTable):
    """The profile list: name, description, and its latest revision's number, author and time."""

    name = tables.Column(verbose_name="Name", linkify=True)
    description = tables.Column(
        verbose_name="Description", orderable=False, default="—", attrs={"td": {"class": "cell-reason"}}
    )
    latest_number = tables.Column(
        verbose_name="Latest revision", default="—", attrs={"th": {"class": "num"}, "td": {"class": "num"}}
    )
    latest_by = tables.Column(verbose_name="By", default="—")
    latest_at = tables.Column(verbose_name="When", empty_values=())

    class Meta(IsowebTable.Meta):
        order_by = "name"
        attrs = {"class": "table table-sm align-top", "id": "profile-table"}

    def render_name(self, value: str) -> str:
        return format_html("<strong>{}</strong>", value)

    def render_description(self, value: str) -> str:
        return value if len(value) <= 120 else value[:119] + "…"

    def render_latest_number(self, value: int) -> str:
        return f"r{value}"

    def render_latest_at(self, record: PinProfile) -> str:
        when = getattr(record, "latest_at", None)
        if not when:
            return "—"
        comment = getattr(record, "latest_comment", "") or ""
        if comment:
            short = comment if len(comment) <= 60 else comment[:59] + "…"
            return format_html('{} <span class="muted">· {}</span>', _when(when), short)
        return _when(when)


class AuditTable(IsowebTable):
    """The audit log's sortable columns and paging; the audit page draws the rows itself."""

    created_at = tables.Column(verbose_name="When", order_by=("created_at", "id"))
    action = tables.Column(verbose_name="Action", order_by=("action", "-created_at", "-id"))
    actor = tables.Column(
        verbose_name="Actor", accessor="actor__username", order_by=("actor__username", "-created_at", "-id")
    )

    class Meta(IsowebTable.Meta):
        model = AuditEvent
        fields = ("created_at", "action", "actor")
        order_by = "-created_at"
