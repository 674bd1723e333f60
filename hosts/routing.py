"""Websocket routes (the live charts add their consumers here)."""

from django.urls import URLPattern

websocket_urlpatterns: list[URLPattern] = []
