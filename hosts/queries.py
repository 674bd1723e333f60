"""Querysets shared by the pages and the API."""

from django.db.models import Count, QuerySet

from hosts.models import Host


def hosts_with_counts() -> QuerySet[Host]:
    """Hosts annotated with CPU, NUMA cell and guest counts in one query."""
    return Host.objects.annotate(
        cpu_count=Count("cpus", distinct=True),
        cell_count=Count("cells", distinct=True),
        domain_count=Count("domains", distinct=True),
    ).order_by("name")
