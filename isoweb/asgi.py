"""ASGI entry point: pages and the REST API over HTTP, live data over websockets."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "isoweb.settings")
# Django must be set up before anything imports models, so this comes first.
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from hosts.live.origin import SameOriginValidator  # noqa: E402
from hosts.live.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # Only the site's own origin (scheme, host and port) or one in CSRF_TRUSTED_ORIGINS may open a socket.
        "websocket": SameOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
