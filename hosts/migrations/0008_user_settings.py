"""Per-user settings such as the time zone pages are shown in (issue 13). Filled by that work."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("hosts", "0007_host_lifecycle")]

    operations: list = []
