"""Page routes of the inventory: hosts (the home page), their CPU map, and guests."""

from django.urls import path

from hosts import views

app_name = "hosts"

urlpatterns = [
    path("", views.host_list, name="host-list"),
    path("hosts/add/", views.host_add, name="host-add"),
    path("hosts/<int:pk>/", views.host_detail, name="host-detail"),
    path("hosts/<int:pk>/sync/", views.host_sync, name="host-sync"),
    path("guests/", views.domain_list, name="domain-list"),
    path("guests/<int:pk>/", views.domain_detail, name="domain-detail"),
]
