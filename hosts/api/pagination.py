"""The API's paging: ``?limit=`` and ``?offset=`` as DRF reads them, with the limit bounded.

DRF's ``LimitOffsetPagination`` passes any ``?limit=`` it can parse to the database; one beyond a 64-bit integer
made SQLite fail (a 500). The limit is capped at ``MAX_LIMIT`` (a larger one gets ``MAX_LIMIT`` rows, as DRF does
with its own ``max_limit``); an offset past the end already gives an empty page without querying the rows.
"""

from rest_framework.pagination import LimitOffsetPagination

MAX_LIMIT = 1000


class BoundedLimitOffsetPagination(LimitOffsetPagination):
    max_limit = MAX_LIMIT
