"""A path converter for row ids: digits only, 1..2**63-1, so a path with any other id matches no route (404)."""

from __future__ import annotations

from hosts.filters import MAX_ID, valid_id


class RowIdConverter:
    """Like Django's ``int`` converter, but a number beyond a primary key's range does not match."""

    regex = f"[0-9]{{1,{len(str(MAX_ID))}}}"

    def to_python(self, value: str) -> int:
        number = valid_id(value)
        if number is None:
            raise ValueError(f"{value!r} is not a row id")  # the route does not match
        return number

    def to_url(self, value: int) -> str:
        return str(value)
