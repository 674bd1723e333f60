"""Host transport policy: an explicit admin override for unverified TLS/SSH (issue 12)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("hosts", "0008_user_settings")]

    operations = [
        migrations.AddField(
            model_name="host",
            name="allow_unverified",
            field=models.BooleanField(
                default=False,
                help_text="An admin's override: accept URI parameters that switch off checking the host's "
                "certificate or SSH host key (no_verify=1). Flagged on every "
                "host page.",
                verbose_name="allow unverified connections",
            ),
        ),
        migrations.AddField(
            model_name="host",
            name="unverified_reason",
            field=models.CharField(
                blank=True, max_length=300, verbose_name="reason for allowing unverified connections"
            ),
        ),
    ]
