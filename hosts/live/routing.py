"""Websocket routes: the live charts of a host and of a guest."""

from django.urls import URLPattern, path

from hosts.live import consumers

websocket_urlpatterns: list[URLPattern] = [
    path("ws/hosts/<int:pk>/", consumers.HostChartConsumer.as_asgi(), name="ws-host-chart"),
    path("ws/guests/<int:pk>/", consumers.GuestChartConsumer.as_asgi(), name="ws-guest-chart"),
]
