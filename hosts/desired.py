"""Each guest's desired state: what the change requests still in force say its managed fields should be.

The stored shape, ``Domain.desired_state`` (a stable interface: drift detection reads it)::

    {"live":   {"vcpupin": {"0": "2"}, "emulatorpin": "0-1", "iothreadpin": {"1": "3"},
                "sched": {"vcpu_quota": 50000, ...}},
     "config": {...same shape...}}

Each scope holds only fields some request in force set, in the shape of ``ChangeTarget.desired``; a field
absent from a scope is **unmanaged** (no request set it, or every request that did was rolled back) and is
never drift. ``{}`` (a guest no request ever touched) means the same as both scopes empty.

A request is in force on a guest while that guest's target is ``applied`` (including one verified when its
host answered again, ``change.settled``); a rolled-back, failed or unknown target contributes nothing. Later
requests win field by field, in the order their guests were written (``ChangeTarget.started_at``, then the
request id); a request's scope (``live``, ``config`` or ``both``) says which scopes its fields land in.
When a rollback puts a field back, the field falls back to the value of the latest earlier request still
in force, or becomes unmanaged.

``refresh_desired_state(domain_ids)`` recomputes and stores it. The apply engine calls it in the same
transaction that records guests applied, settled or rolled back (hosts/changes/outcomes.py); anyone may call
it again at any time (it is idempotent), e.g. after importing old requests.
"""

from hosts.changes.desired_state import InForce, later_writes, merge_desired, refresh_desired_state

__all__ = ["InForce", "later_writes", "merge_desired", "refresh_desired_state"]
