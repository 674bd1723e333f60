"""Page routes: hosts (the home page), their CPU map and partition, guests, profiles, changes and the audit log."""

from django.urls import path

from hosts.views import audit, changes, drift, guests, hosts, profiles, settings, users

app_name = "hosts"

urlpatterns = [
    path("", hosts.host_list, name="host-list"),
    path("hosts/add/", hosts.host_add, name="host-add"),
    path("hosts/<int:pk>/", hosts.host_detail, name="host-detail"),
    path("hosts/<int:pk>/sync/", hosts.host_sync, name="host-sync"),
    path("hosts/<int:pk>/partition/", hosts.host_partition, name="host-partition"),
    path("hosts/<int:pk>/edit/", hosts.host_edit, name="host-edit"),
    path("hosts/<int:pk>/maintenance/", hosts.host_maintenance, name="host-maintenance"),
    path("hosts/<int:pk>/resume/", hosts.host_resume, name="host-resume"),
    path("hosts/<int:pk>/remove/", hosts.host_remove, name="host-remove"),
    path("guests/", guests.domain_list, name="domain-list"),
    path("guests/<int:pk>/", guests.domain_detail, name="domain-detail"),
    path("profiles/", profiles.profile_list, name="profile-list"),
    path("profiles/new/", profiles.profile_create, name="profile-create"),
    path("profiles/<int:pk>/", profiles.profile_detail, name="profile-detail"),
    path("profiles/<int:pk>/edit/", profiles.profile_edit, name="profile-edit"),
    path("changes/", changes.change_list, name="change-list"),
    path("changes/new/", changes.change_create, name="change-create"),
    path("changes/<int:pk>/", changes.change_detail, name="change-detail"),
    path("changes/<int:pk>/approve/", changes.change_approve, name="change-approve"),
    path("changes/<int:pk>/reject/", changes.change_reject, name="change-reject"),
    path("changes/<int:pk>/rollback/", changes.change_rollback, name="change-rollback"),
    path("audit/", audit.audit_list, name="audit-list"),
    path("settings/", settings.user_settings, name="user-settings"),
    path("drift/", drift.drift_list, name="drift-list"),
    path("drift/remediate/", drift.drift_remediate, name="drift-remediate"),
    path("hosts/<int:pk>/auto-reassert/", drift.host_auto_reassert, name="host-auto-reassert"),
    path("users/", users.user_list, name="user-list"),
    path("users/new/", users.user_create, name="user-create"),
    path("users/<int:pk>/", users.user_detail, name="user-detail"),
    path("users/<int:pk>/roles/", users.user_roles, name="user-roles"),
    path("users/<int:pk>/active/", users.user_active, name="user-active"),
    path("users/<int:pk>/password/", users.user_password, name="user-password"),
    path("users/<int:pk>/tokens/revoke/", users.user_tokens_revoke, name="user-tokens-revoke"),
    path("users/<int:pk>/tokens/<str:key>/revoke/", users.user_token_revoke, name="user-token-revoke"),
]
