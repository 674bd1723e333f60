"""API routes in NetBox's manner: hyphenated plural resources, actions as POST sub-routes."""

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView
from rest_framework.routers import DefaultRouter

from hosts.api import views
from hosts.api.change_requests import AuditEventViewSet, ChangeRequestViewSet
from hosts.api.profiles import ProfileViewSet

app_name = "api"

router = DefaultRouter()
router.register("hosts", views.HostViewSet, basename="host")
router.register("domains", views.DomainViewSet, basename="domain")
router.register("profiles", ProfileViewSet, basename="profile")
router.register("change-requests", ChangeRequestViewSet, basename="change-request")
router.register("audit-events", AuditEventViewSet, basename="audit-event")

urlpatterns = [
    path("auth/token/", views.TokenView.as_view(), name="token"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("", include(router.urls)),
]
