"""The audit table refuses UPDATE and DELETE in the database itself (triggers on SQLite and PostgreSQL).

The ORM already refuses through ``AuditEvent.objects``; these triggers also stop ``_base_manager``, raw SQL and
any other client of the database. One UPDATE stays allowed: one that only clears foreign keys, which is what
Django's ``on_delete=SET_NULL`` does when the host, guest, profile, change request or user an event refers to is
deleted (inventory sync deletes vanished guests); every other column must stay as it was. On PostgreSQL TRUNCATE
is refused too. Both raise an integrity error ("audit events are append-only").
"""

from typing import Any

from django.db import migrations

TABLE = "hosts_auditevent"
# Columns that never change once written, and foreign keys that may only be cleared (set to NULL).
FIXED_COLUMNS = ("id", "created_at", "action", "object_repr", "before", "after", "message")
CLEARABLE_COLUMNS = ("actor_id", "host_id", "domain_id", "change_request_id", "profile_id")
MESSAGE = "audit events are append-only"


def _only_clears_foreign_keys(same: str) -> str:
    """SQL that holds when an UPDATE keeps every fixed column and changes foreign keys only to NULL."""
    fixed = [f'NEW."{c}" {same} OLD."{c}"' for c in FIXED_COLUMNS]
    cleared = [f'(NEW."{c}" {same} OLD."{c}" OR NEW."{c}" IS NULL)' for c in CLEARABLE_COLUMNS]
    return " AND ".join(fixed + cleared)


SQLITE_CREATE = [
    f"""CREATE TRIGGER {TABLE}_no_update BEFORE UPDATE ON {TABLE}
    WHEN NOT ({_only_clears_foreign_keys("IS")})
    BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END""",
    f"""CREATE TRIGGER {TABLE}_no_delete BEFORE DELETE ON {TABLE}
    BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END""",
]
SQLITE_DROP = [f"DROP TRIGGER IF EXISTS {TABLE}_no_update", f"DROP TRIGGER IF EXISTS {TABLE}_no_delete"]

POSTGRESQL_CREATE = [
    f"""CREATE OR REPLACE FUNCTION {TABLE}_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'UPDATE' AND {_only_clears_foreign_keys("IS NOT DISTINCT FROM")} THEN
            RETURN NEW;
        END IF;
        RAISE EXCEPTION '{MESSAGE}' USING ERRCODE = 'restrict_violation';
    END
    $$""",
    f"""CREATE TRIGGER {TABLE}_no_update_delete BEFORE UPDATE OR DELETE ON {TABLE}
    FOR EACH ROW EXECUTE FUNCTION {TABLE}_append_only()""",
    f"""CREATE TRIGGER {TABLE}_no_truncate BEFORE TRUNCATE ON {TABLE}
    FOR EACH STATEMENT EXECUTE FUNCTION {TABLE}_append_only()""",
]
POSTGRESQL_DROP = [
    f"DROP TRIGGER IF EXISTS {TABLE}_no_truncate ON {TABLE}",
    f"DROP TRIGGER IF EXISTS {TABLE}_no_update_delete ON {TABLE}",
    f"DROP FUNCTION IF EXISTS {TABLE}_append_only()",
]

CREATE = {"sqlite": SQLITE_CREATE, "postgresql": POSTGRESQL_CREATE}
DROP = {"sqlite": SQLITE_DROP, "postgresql": POSTGRESQL_DROP}


def _run(statements: dict[str, list[str]], schema_editor: Any) -> None:
    vendor = schema_editor.connection.vendor
    if vendor not in statements:
        raise NotImplementedError(f"no append-only triggers for the audit table on {vendor}")
    for sql in statements[vendor]:
        schema_editor.execute(sql, params=None)


def create_triggers(apps: Any, schema_editor: Any) -> None:
    _run(CREATE, schema_editor)


def drop_triggers(apps: Any, schema_editor: Any) -> None:
    _run(DROP, schema_editor)


class Migration(migrations.Migration):
    dependencies = [
        ("hosts", "0004_host_unresponsive_unknown_targets"),
    ]

    operations = [
        migrations.RunPython(create_triggers, drop_triggers, elidable=False),
    ]
