"""isoweb: a control plane for KVM CPU isolation through libvirt."""

from isoweb.celery import app as celery_app

__all__ = ["celery_app"]
