"""Page routes: hosts (the home page), their CPU map and partition, guests, profiles, changes and the audit log."""

from django.urls import path

from hosts import views, views_changes

app_name = "hosts"

urlpatterns = [
    path("", views.host_list, name="host-list"),
    path("hosts/add/", views.host_add, name="host-add"),
    path("hosts/<int:pk>/", views.host_detail, name="host-detail"),
    path("hosts/<int:pk>/sync/", views.host_sync, name="host-sync"),
    path("guests/", views.domain_list, name="domain-list"),
    path("guests/<int:pk>/", views.domain_detail, name="domain-detail"),
    path("hosts/<int:pk>/partition/", views_changes.host_partition, name="host-partition"),
    path("profiles/", views_changes.profile_list, name="profile-list"),
    path("profiles/new/", views_changes.profile_create, name="profile-create"),
    path("profiles/<int:pk>/", views_changes.profile_detail, name="profile-detail"),
    path("profiles/<int:pk>/edit/", views_changes.profile_edit, name="profile-edit"),
    path("changes/", views_changes.change_list, name="change-list"),
    path("changes/new/", views_changes.change_create, name="change-create"),
    path("changes/<int:pk>/", views_changes.change_detail, name="change-detail"),
    path("changes/<int:pk>/approve/", views_changes.change_approve, name="change-approve"),
    path("changes/<int:pk>/reject/", views_changes.change_reject, name="change-reject"),
    path("changes/<int:pk>/rollback/", views_changes.change_rollback, name="change-rollback"),
    path("audit/", views_changes.audit_list, name="audit-list"),
]
