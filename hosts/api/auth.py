"""API token: a script trades a username and password for the token it sends on every call."""

from rest_framework.authtoken.views import ObtainAuthToken


class TokenView(ObtainAuthToken):
    """Exchange a username and password for an API token."""
