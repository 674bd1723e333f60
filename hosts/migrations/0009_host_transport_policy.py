"""Host transport policy: an explicit admin override for unverified TLS/SSH (issue 12). Filled by that work."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("hosts", "0008_user_settings")]

    operations: list = []
