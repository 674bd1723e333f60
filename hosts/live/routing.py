"""Websocket routes: the live charts of a host and of a guest; any other path is closed with 4404.

Ids are row ids (1..2**63-1, ``hosts.converters.RowIdConverter``): ``/ws/hosts/-1/``, an id too large and any
unknown path reach ``close_not_found`` instead of making the router raise (a 500 with a traceback in the log).
"""

from typing import Any, cast

from django.urls import URLPattern, path, re_path, register_converter

from hosts.converters import RowIdConverter
from hosts.live import consumers

register_converter(RowIdConverter, "rowid")


async def close_not_found(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Refuse a websocket to a path that names no chart: close it at the handshake with 4404."""
    message = await receive()
    if message["type"] == "websocket.connect":
        await send({"type": "websocket.close", "code": consumers.CLOSE_NOT_FOUND})


websocket_urlpatterns: list[URLPattern] = [
    path("ws/hosts/<rowid:pk>/", consumers.HostChartConsumer.as_asgi(), name="ws-host-chart"),
    path("ws/guests/<rowid:pk>/", consumers.GuestChartConsumer.as_asgi(), name="ws-guest-chart"),
    re_path(r"", cast(Any, close_not_found), name="ws-not-found"),  # an ASGI app, not a Django view
]
