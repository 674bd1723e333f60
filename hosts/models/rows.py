"""Writing many rows' fields with one prepared statement.

Django's ``bulk_update`` builds a ``CASE WHEN pk = ... THEN ...`` expression per field and row and resolves
each through the ORM's expression machinery: for the handful of rows an apply batch writes, that costs a
few milliseconds of CPU per call, which on a busy worker is time taken from the libvirt calls in flight.
``update_rows`` sends ``UPDATE table SET f = %s, ... WHERE pk = %s`` once per row through ``executemany``,
with each value prepared by its model field for the database in use, as ``save()`` would.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import connections, models, router


def update_rows(objs: Sequence[models.Model], fields: Sequence[str]) -> int:
    """Write ``fields`` of each (saved) object of one model; return the number of objects written.

    Like ``bulk_update`` (no signals, no ``save()``), but one statement executed per row: cheaper for a few
    rows, and as good for hundreds.
    """
    if not objs or not fields:
        return 0
    model = type(objs[0])
    meta = model._meta
    pk = meta.pk
    columns: list[tuple[models.Field[Any, Any], str]] = []
    for name in fields:
        field = meta.get_field(name)
        if not isinstance(field, models.Field) or field.primary_key or not field.concrete or not field.column:
            raise ValueError(f"update_rows writes concrete, non-key fields only, not {name!r}")
        columns.append((field, field.column))
    if pk is None or not pk.column:
        raise ValueError(f"{meta.label} has no primary key column")
    connection = connections[router.db_for_write(model)]
    quote = connection.ops.quote_name
    assignments = ", ".join(f"{quote(column)} = %s" for _field, column in columns)
    sql = f"UPDATE {quote(meta.db_table)} SET {assignments} WHERE {quote(pk.column)} = %s"  # noqa: S608
    params = []
    for obj in objs:
        if type(obj) is not model or obj.pk is None:
            raise ValueError("update_rows writes saved objects of one model")
        values = [field.get_db_prep_save(getattr(obj, field.attname), connection) for field, _column in columns]
        params.append([*values, pk.get_db_prep_save(obj.pk, connection)])
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)
    return len(params)
