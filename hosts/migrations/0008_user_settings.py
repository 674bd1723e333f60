"""Per-user settings such as the time zone pages are shown in (issue 13)."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

import hosts.models.users


class Migration(migrations.Migration):
    dependencies = [
        ("hosts", "0007_host_lifecycle"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="UserSettings",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "time_zone",
                    models.CharField(
                        help_text="An IANA zone name.",
                        max_length=64,
                        validators=[hosts.models.users.validate_time_zone],
                    ),
                ),
                (
                    "time_zone_source",
                    models.CharField(
                        choices=[("browser", "Taken from the browser"), ("chosen", "Chosen by the user")],
                        default="browser",
                        max_length=10,
                    ),
                ),
                ("updated_at", models.DateTimeField(auto_now=True)),
                (
                    "user",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="isoweb_settings",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={"verbose_name": "user settings", "verbose_name_plural": "user settings"},
        ),
    ]
