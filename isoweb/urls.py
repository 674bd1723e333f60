"""URL routes: pages, the REST API and its schema, login."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView

from hosts.metrics import metrics_view
from hosts.views.api_docs import api_docs

urlpatterns = [
    path("", include("hosts.urls")),
    # The host list is the home page; /hosts/ is where people look for it.
    path("hosts/", RedirectView.as_view(pattern_name="hosts:host-list", query_string=True), name="host-list-alias"),
    path("api/docs/", api_docs, name="api-docs"),
    path("api/", include("hosts.api.urls")),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("django-admin/", admin.site.urls),
    # Prometheus (OpenMetrics); its own access rule: a bearer token or an allowed network (hosts/metrics.py).
    path("metrics", metrics_view, name="metrics"),
]

handler500 = "hosts.views.errors.server_error"
