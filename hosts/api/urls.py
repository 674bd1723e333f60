"""API routes in NetBox's manner: hyphenated plural resources, actions as POST sub-routes."""

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView
from rest_framework.routers import DefaultRouter

from hosts.api import views

app_name = "api"

router = DefaultRouter()
router.register("hosts", views.HostViewSet, basename="host")
router.register("domains", views.DomainViewSet, basename="domain")

urlpatterns = [
    path("auth/token/", views.TokenView.as_view(), name="token"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("", include(router.urls)),
]
