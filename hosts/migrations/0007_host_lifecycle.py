"""Host lifecycle: maintenance and removal (issue 12).

A host in maintenance has ``maintenance_since`` (and why); a removed host keeps its row with ``removed_at`` so
the change requests (``ChangeTarget.host``, ``ApplyJob.host``: PROTECT) and audit events that name it stay
readable. Names and URIs are unique among registered (not removed) hosts only, so a removed host's name or URI
can be registered again.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("hosts", "0006_isolation_drift")]

    operations = [
        migrations.AddField(
            model_name="host",
            name="maintenance_reason",
            field=models.CharField(blank=True, help_text="Why the host is in maintenance.", max_length=300),
        ),
        migrations.AddField(
            model_name="host",
            name="maintenance_since",
            field=models.DateTimeField(
                blank=True, help_text="In maintenance since then: not synced, charted or changed.", null=True
            ),
        ),
        migrations.AddField(
            model_name="host",
            name="removed_at",
            field=models.DateTimeField(blank=True, help_text="Removed from the inventory then.", null=True),
        ),
        migrations.AlterField(
            model_name="host",
            name="name",
            field=models.CharField(max_length=100),
        ),
        migrations.AlterField(
            model_name="host",
            name="uri",
            field=models.CharField(max_length=500, verbose_name="libvirt URI"),
        ),
        migrations.AddConstraint(
            model_name="host",
            constraint=models.UniqueConstraint(
                condition=models.Q(("removed_at__isnull", True)), fields=("name",), name="host_name_unique_registered"
            ),
        ),
        migrations.AddConstraint(
            model_name="host",
            constraint=models.UniqueConstraint(
                condition=models.Q(("removed_at__isnull", True)), fields=("uri",), name="host_uri_unique_registered"
            ),
        ),
    ]
