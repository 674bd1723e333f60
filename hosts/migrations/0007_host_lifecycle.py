"""Host lifecycle: maintenance and removal (issue 12). Filled by the host-lifecycle work."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("hosts", "0006_isolation_drift")]

    operations: list = []
