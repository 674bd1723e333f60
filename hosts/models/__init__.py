"""isoweb's models: the inventory, pin profiles, change requests and the audit log."""

from hosts.models.audit import AuditEvent
from hosts.models.changes import ApplyJob, ChangeRequest, ChangeTarget
from hosts.models.drift import Drift
from hosts.models.inventory import Domain, Host, HostCPU, NumaCell
from hosts.models.profiles import PinProfile, PinProfileRevision
from hosts.models.users import UserSettings

__all__ = [
    "ApplyJob",
    "AuditEvent",
    "ChangeRequest",
    "ChangeTarget",
    "Domain",
    "Drift",
    "Host",
    "HostCPU",
    "NumaCell",
    "PinProfile",
    "PinProfileRevision",
    "UserSettings",
]
