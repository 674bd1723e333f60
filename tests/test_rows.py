"""update_rows: many rows' fields in one prepared statement, each value prepared by its field."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from hosts.models import Domain, Host
from hosts.models.rows import update_rows


@pytest.fixture
def guests(db: None) -> list[Domain]:
    host = Host.objects.create(name="kvm-rows", uri="qemu+tcp://127.0.0.1:9/system", transport="tcp")
    return [
        Domain.objects.create(host=host, uuid=uuid.uuid4(), name=f"g{i}", state="running", vcpus_current=1)
        for i in range(5)
    ]


def test_writes_the_named_fields_of_every_row_in_one_statement(guests: list[Domain]) -> None:
    when = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    for i, guest in enumerate(guests):
        guest.tuning_live = {"emulatorpin": f"{i}", "sched": {"vcpu_quota": 1000 * (i + 1)}}
        guest.synced_at = when
        guest.vcpus_current = 99  # changed in memory but not named: must stay 1 in the database
    with CaptureQueriesContext(connection) as queries:
        assert update_rows(guests, ["tuning_live", "synced_at"]) == 5
    assert len(queries) == 1 and queries[0]["sql"].startswith("5 times: UPDATE")
    for i, guest in enumerate(guests):
        row = Domain.objects.get(pk=guest.pk)
        assert row.tuning_live == {"emulatorpin": f"{i}", "sched": {"vcpu_quota": 1000 * (i + 1)}}
        assert row.synced_at == when
        assert row.vcpus_current == 1


def test_nothing_to_write_makes_no_query(guests: list[Domain]) -> None:
    with CaptureQueriesContext(connection) as queries:
        assert update_rows([], ["tuning_live"]) == 0
        assert update_rows(guests, []) == 0
    assert len(queries) == 0


@pytest.mark.parametrize("field", ["id", "uuid_does_not_exist"])
def test_refuses_keys_and_unknown_fields(guests: list[Domain], field: str) -> None:
    with pytest.raises(Exception, match=field):
        update_rows(guests, [field])


def test_refuses_unsaved_rows_and_mixed_models(guests: list[Domain]) -> None:
    with pytest.raises(ValueError, match="saved objects of one model"):
        update_rows([guests[0], Domain(name="new")], ["name"])
    with pytest.raises(ValueError, match="saved objects of one model"):
        update_rows([guests[0], guests[0].host], ["name"])
    assert Domain.objects.get(pk=guests[0].pk).name == "g0"
