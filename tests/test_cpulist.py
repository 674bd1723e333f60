"""libvirt cpulist syntax: what libvirt accepts is accepted, what it refuses is refused naming the token."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hosts.cpulist import CpulistError, cpumap_to_cpus, format_cpulist, parse_cpulist


@pytest.mark.parametrize(
    ("text", "cpus"),
    [
        ("0", {0}),
        ("0-3", {0, 1, 2, 3}),
        ("0-3,^2", {0, 1, 3}),
        (" 1 , 3-4 ", {1, 3, 4}),
        ("0-7,^3,^5,6", {0, 1, 2, 4, 6, 7}),
        ("^1,1", {1}),  # evaluated left to right
    ],
)
def test_valid_lists_parse(text: str, cpus: set[int]) -> None:
    assert parse_cpulist(text) == cpus


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("1-0", "'1-0' is a reversed range"),
        ("0,3-1", "'3-1' in '0,3-1' is a reversed range"),
        ("0,,1", "empty item"),
        ("0,", "empty item"),
        ("^1-2", "a range cannot be excluded"),
        ("0,^0", "leaves no CPU"),
        ("", "empty"),
        ("a", "'a' is not a CPU number"),
        ("0-x", "'x' in '0-x' is not a CPU number"),
        ("99999", "beyond the largest CPU number"),
    ],
)
def test_invalid_lists_are_refused_naming_the_token(text: str, words: str) -> None:
    with pytest.raises(CpulistError, match=words.replace("^", r"\^")):
        parse_cpulist(text)


def test_cpus_the_host_lacks_are_refused() -> None:
    with pytest.raises(CpulistError, match="names CPU 4-5, which the host does not have"):
        parse_cpulist("0,4-5", host_cpus=range(4))


def test_cpumap_turns_into_cpus() -> None:
    assert cpumap_to_cpus((True, False, True, True)) == {0, 2, 3}


@given(st.sets(st.integers(min_value=0, max_value=300), min_size=1))
def test_format_then_parse_is_identity(cpus: set[int]) -> None:
    text = format_cpulist(cpus)
    assert parse_cpulist(text) == cpus
    assert text == format_cpulist(parse_cpulist(text))
