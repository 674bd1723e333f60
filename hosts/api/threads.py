"""API for a guest's QEMU threads: ``GET /api/guests/{id}/threads/``, read live from its host.

Each thread (vCPU N, emulator, I/O thread N) with the thread id ``top -H`` and ``taskset -p`` show, where it
may run, where it last ran and its CPU time so far (two readings give its share of one CPU). The guest page
polls this every few seconds while it is open. A guest that does not run has no threads (200, empty); a host
that does not answer within the live deadline answers 503 saying so.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from hosts.libvirt.errors import VirtError
from hosts.libvirt.threads import GuestThreads, fetch_guest_threads
from hosts.models import Domain, Host

NOT_RUNNING = ("shutoff", "crashed")


def threads_json(read: GuestThreads) -> dict[str, Any]:
    """The threads as the API answers them (and static/js/guest_threads.js reads them)."""
    return {
        "sampled_at": round(read.wall, 3),
        "monotonic": round(read.mono, 6),
        "total_cpu_time_ns": read.total_cpu_time_ns,
        "threads": [
            {
                "kind": t.kind,
                "number": t.number,
                "label": t.label,
                "thread_id": t.thread_id,
                "affinity": t.affinity,
                "last_cpu": t.last_cpu,
                "state": t.state,
                "cpu_time_ns": t.cpu_time_ns,
            }
            for t in read.threads
        ],
    }


class GuestThreadsView(APIView):
    """A running guest's QEMU threads, read from libvirt now."""

    @extend_schema(responses={200: dict, 404: dict, 503: dict})
    def get(self, request: Request, pk: int) -> Response:
        domain = Domain.objects.select_related("host").filter(pk=pk).first()
        if domain is None:
            return Response({"detail": "No such guest."}, status=status.HTTP_404_NOT_FOUND)
        base: dict[str, Any] = {"guest": domain.pk, "name": domain.name, "host": domain.host.name}
        if domain.state in NOT_RUNNING:
            return Response({**base, "running": False, "threads": [], "detail": f"{domain.name} is not running."})
        if domain.host.status in (Host.Status.DOWN, Host.Status.UNRESPONSIVE):
            return Response(
                {**base, "running": None, "threads": [], "detail": f"{domain.host.name} is {domain.host.status}."},
                status=status.HTTP_503_SERVICE_UNAVAILABLE,
            )
        try:
            read = fetch_guest_threads(domain.host.uri, str(domain.uuid), name=domain.host.name)
        except VirtError as exc:
            code = status.HTTP_409_CONFLICT if exc.permanent else status.HTTP_503_SERVICE_UNAVAILABLE
            return Response({**base, "running": None, "threads": [], "detail": exc.message}, status=code)
        return Response({**base, "running": True, **threads_json(read)})
