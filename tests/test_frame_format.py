"""One frame format for the collector, the history and the browser (documented in hosts/live/frames.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from django.conf import settings

from hosts.live import frames
from hosts.live.history import MinuteBuckets

EXAMPLE = json.loads((Path(settings.BASE_DIR) / "static/js/frame-format.json").read_text())
CHARTS_JS = (Path(settings.BASE_DIR) / "static/js/charts.js").read_text()


def test_the_shared_example_holds_exactly_the_documented_keys() -> None:
    assert set(EXAMPLE["guest"]) - {frames.GAP} == frames.GUEST_KEYS
    assert set(EXAMPLE["host"]) - {frames.GAP} == frames.HOST_KEYS
    assert {frames.GAP, frames.FOREIGN} == frames.OPTIONAL_KEYS
    for ids, lists in frames.KEYED_FIELDS.items():
        example = EXAMPLE["guest"] if ids in EXAMPLE["guest"] else EXAMPLE["host"]
        assert all(len(example[name]) == len(example[ids]) for name in lists)


def test_frames_built_by_the_collector_have_the_example_s_shape() -> None:
    guest = frames.guest_frame(1.23456, {1: 5.04, 0: 97.55}, {0: 0.01}, 1.25, None, gap=True)
    assert guest == {"t": 1.235, "n": [0, 1], "v": [97.5, 5.0], "d": [0.0, None], "o": 1.2, "g": None, "gap": 1}
    assert set(guest) | {frames.FOREIGN} == set(EXAMPLE["guest"])
    host = frames.host_frame(2.0, {3: 10.0, 0: 99.99})
    assert host == {"t": 2.0, "i": [0, 3], "b": [100.0, 10.0]}
    assert set(host) | frames.OPTIONAL_KEYS == set(EXAMPLE["host"])


def test_foreign_load_follows_the_id_list_and_is_left_out_where_nothing_is_dedicated() -> None:
    guest = frames.guest_frame(1.0, {0: 50.0, 1: 5.0}, {0: 48.04, 1: 0.0}, 1.0, 56.0, foreign={0: 47.96})
    assert guest["f"] == [48.0, None]  # vCPU 0's dedicated CPU carries 48 % of others' work; vCPU 1 has none
    host = frames.host_frame(1.0, {0: 3.0, 1: 100.0}, foreign={1: 47.96})
    assert host["f"] == [None, 48.0]
    assert "f" not in frames.host_frame(1.0, {0: 3.0}, foreign={})
    assert set(guest) == set(EXAMPLE["guest"]) - {frames.GAP} and set(host) == set(EXAMPLE["host"]) - {frames.GAP}


def test_minute_buckets_keep_every_documented_field() -> None:
    buckets = MinuteBuckets()
    guest = {k: v for k, v in EXAMPLE["guest"].items() if k != frames.GAP}
    buckets.add("guest", 1, {**guest, "t": 60.0})
    finished = buckets.add("guest", 1, {**guest, "t": 120.0})
    assert finished is not None and set(finished) >= frames.GUEST_KEYS
    host = {k: v for k, v in EXAMPLE["host"].items() if k != frames.GAP}
    buckets.add("host", 1, {**host, "t": 60.0})
    finished = buckets.add("host", 1, {**host, "t": 120.0})
    # "f" follows "n" in a guest frame and "i" in a host frame: the minute frame keeps each with its own ids.
    assert finished is not None and set(finished) == frames.HOST_KEYS and finished["f"] == host["f"]


def test_a_minute_without_foreign_load_does_not_grow_one() -> None:
    buckets = MinuteBuckets()
    plain = frames.host_frame(60.0, {0: 10.0})
    buckets.add("host", 2, plain)
    finished = buckets.add("host", 2, {**plain, "t": 120.0})
    assert finished == {"t": 60, "i": [0], "b": [10.0]}


def test_charts_js_reads_every_field_of_the_format() -> None:
    """The browser side reads each key by name (f.v, f.n ...); a key renamed on one side only fails here."""
    code = re.sub(r"//[^\n]*|/\*.*?\*/", "", CHARTS_JS, flags=re.S)  # comments ("e.g.") do not count
    for key in sorted(frames.GUEST_KEYS | frames.HOST_KEYS | {frames.GAP}):
        # charts.js names a frame f, a or b, or reaches one as frames[i]
        reads = rf"(?<![\w.])[fab]\.{key}\b|\]\.{key}\b"
        assert re.search(reads, code), f"charts.js never reads frame key {key!r}"
