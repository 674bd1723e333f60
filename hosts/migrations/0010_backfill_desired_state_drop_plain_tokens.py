"""Two one-off steps for databases older than issues 11 and 12.

1. Fill ``Domain.desired_state`` for guests changed before desired state existed: from their targets still
   applied, oldest first, by the same pure merge the apply engine uses (hosts/changes/desired_state.py).
2. Drop ``authtoken_token``: the plain-text API tokens of ``rest_framework.authtoken``, which isoweb no longer
   installs (tokens are knox's, hashed and expiring). Removing the app leaves its table, and the keys in it.
"""

from typing import Any

from django.db import migrations
from django.db.models import F

from hosts.changes.desired_state import merge_desired


def backfill_desired_state(apps: Any, schema_editor: Any) -> None:
    ChangeTarget = apps.get_model("hosts", "ChangeTarget")
    Domain = apps.get_model("hosts", "Domain")
    rows = (
        ChangeTarget.objects.filter(status="applied", domain__isnull=False)
        .order_by(F("started_at").asc(nulls_first=True), "change_request_id", "pk")
        .values_list("domain_id", "change_request__scope", "desired")
    )
    per_domain: dict[int, list[tuple[str, dict[str, Any]]]] = {}
    for domain_id, scope, desired in rows:
        per_domain.setdefault(domain_id, []).append((scope, desired or {}))
    for domain_id, in_force in per_domain.items():
        Domain.objects.filter(pk=domain_id).update(desired_state=merge_desired(in_force))


class Migration(migrations.Migration):
    dependencies = [("hosts", "0009_host_transport_policy")]

    operations = [
        migrations.RunPython(backfill_desired_state, migrations.RunPython.noop),
        migrations.RunSQL("DROP TABLE IF EXISTS authtoken_token", migrations.RunSQL.noop),
    ]
