"""``{% drift_section host_id=... %}`` / ``{% drift_section domain_id=... %}``: a page's drift section.

The host and guest pages include their drift (open, and the latest resolved) without their views having
to know about it.
"""

from __future__ import annotations

from typing import Any

from django import template

from hosts.views.drift import drift_section as section_context

register = template.Library()


@register.inclusion_tag("hosts/_drift.html", takes_context=True)
def drift_section(
    context: template.Context, host_id: int | None = None, domain_id: int | None = None
) -> dict[str, Any]:
    """Render a host's or a guest's drift section with the page's request and permissions."""
    out = section_context(host_id=host_id, domain_id=domain_id)
    for name in ("request", "csrf_token", "can_draft", "can_manage_hosts", "host"):
        if name in context:
            out[name] = context[name]
    out["on_host"] = host_id is not None
    return out
