"""Celery application: the workers that sync inventory and apply changes."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "isoweb.settings")

app = Celery("isoweb")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
