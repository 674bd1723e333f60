"""API permissions by role."""

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from hosts.roles import can_approve, can_draft, can_manage_hosts, can_sync, can_view


class CanView(BasePermission):
    """Any role may read; a user with no role (or no login) gets nothing."""

    message = "You need a role (viewer, operator, approver or admin) to see the inventory."

    def has_permission(self, request: Request, view: Any) -> bool:
        return can_view(request.user)


class CanManageHostsOrReadOnly(CanView):
    """Reading is for every role; adding or changing hosts is for admins."""

    message = "Only admins may add or change hosts."

    def has_permission(self, request: Request, view: Any) -> bool:
        if request.method in ("GET", "HEAD", "OPTIONS"):
            return can_view(request.user)
        return can_manage_hosts(request.user)


class CanSync(CanView):
    message = "Only operators, approvers and admins may ask for a sync."

    def has_permission(self, request: Request, view: Any) -> bool:
        return can_sync(request.user)


class CanDraftOrReadOnly(CanView):
    """Every role reads; operators create and revise profiles and change requests."""

    message = "Only operators may draft profiles and change requests."

    def has_permission(self, request: Request, view: Any) -> bool:
        if request.method in ("GET", "HEAD", "OPTIONS"):
            return can_view(request.user)
        return can_draft(request.user)


class CanApprove(CanView):
    message = "Only approvers may approve, reject or roll back change requests."

    def has_permission(self, request: Request, view: Any) -> bool:
        return can_approve(request.user)


class CanManageHosts(CanView):
    message = "Only admins may change hosts and their CPU partitions."

    def has_permission(self, request: Request, view: Any) -> bool:
        return can_manage_hosts(request.user)
