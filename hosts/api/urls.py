"""API routes in NetBox's manner: hyphenated plural resources, actions as POST sub-routes."""

from django.urls import include, path, register_converter
from drf_spectacular.views import SpectacularAPIView
from rest_framework.routers import DefaultRouter

from hosts.api.audit import AuditEventViewSet
from hosts.api.auth import LogoutAllView, TokenView
from hosts.api.changes import ChangeRequestViewSet
from hosts.api.drift import DriftViewSet, HostAutoReassertView
from hosts.api.guests import DomainViewSet
from hosts.api.hosts import HostViewSet
from hosts.api.profiles import ProfileViewSet
from hosts.api.threads import GuestThreadsView
from hosts.api.users import UserViewSet
from hosts.converters import RowIdConverter

app_name = "api"
register_converter(RowIdConverter, "rowid")

router = DefaultRouter()
router.register("hosts", HostViewSet, basename="host")
router.register("domains", DomainViewSet, basename="domain")
router.register("profiles", ProfileViewSet, basename="profile")
router.register("change-requests", ChangeRequestViewSet, basename="change-request")
router.register("audit-events", AuditEventViewSet, basename="audit-event")
router.register("drift", DriftViewSet, basename="drift")
router.register("users", UserViewSet, basename="user")

urlpatterns = [
    path("auth/token/", TokenView.as_view(), name="token"),
    path("auth/logout-all/", LogoutAllView.as_view(), name="logout-all"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("hosts/<int:pk>/auto-reassert/", HostAutoReassertView.as_view(), name="host-auto-reassert"),
    path("guests/<rowid:pk>/threads/", GuestThreadsView.as_view(), name="guest-threads"),
    path("", include(router.urls)),
]
