from django.apps import AppConfig


class HostsConfig(AppConfig):
    """The isoweb application: libvirt hosts, their CPUs and their guests."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "hosts"
    verbose_name = "Hosts and guests"
