"""Hold one guest's plan while it is made: what it will set, the CPUs it takes and the issues found so far.

The placement and scheduler steps each add to the same draft in turn, so a later step sees what an earlier
one took; ``plan()`` then freezes it into the GuestPlan that the requester, the approver and the worker read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hosts.planning.holdings import holders_besides, kept_holdings, scope_tuning
from hosts.planning.schema import ProfileSpec
from hosts.planning.types import GuestPlan, GuestState, HostLayout, Issue


class GuestDraft:
    """Plan one guest on its host, given what the other guests hold; collects issues as it goes."""

    def __init__(
        self,
        spec: ProfileSpec,
        guest: GuestState,
        host: HostLayout,
        held: Mapping[int, set[int]],
        names: Mapping[int, str],
        scope: str,
    ) -> None:
        self.spec, self.guest, self.host, self.scope = spec, guest, host, scope
        # CPUs other guests hold dedicated, each with one of its holders.
        self.others = holders_besides(held, guest.domain_id)
        self.names = names
        self.current = scope_tuning(guest, scope)
        self.desired: dict[str, Any] = {}
        self.errors: list[Issue] = []
        self.warnings: list[Issue] = []
        # CPUs this guest keeps or takes alone: unavailable to its own later allocations as well.
        self.taken: set[int] = kept_holdings(spec, self.current, host.guest_pool)

    def error(self, field: str, code: str, message: str) -> None:
        """Record a problem that blocks this guest's plan."""
        self.errors.append(Issue(field=field, message=message, code=code))

    def warn(self, field: str, code: str, message: str) -> None:
        """Record a risk the operator should see; the plan can still be applied."""
        self.warnings.append(Issue(field=field, message=message, code=code))

    def guest_name(self, domain_id: int) -> str:
        """Name another guest for a message, by id where the inventory does not know it."""
        return self.names.get(domain_id, f"guest #{domain_id}")

    def free(self) -> set[int]:
        """Return the guest-pool CPUs that no other guest holds and this guest has not taken."""
        return set(self.host.guest_pool) - set(self.others) - self.taken

    def take_if_alone(self, cpus: frozenset[int]) -> None:
        """Take the CPU of a single-CPU pin, so no later allocation of this guest lands on it."""
        if len(cpus) == 1:
            self.taken |= cpus & self.host.guest_pool

    def plan(self) -> GuestPlan:
        """Freeze the draft into the plan that is shown, approved and applied."""
        return GuestPlan(
            domain_id=self.guest.domain_id,
            name=self.guest.name,
            host_id=self.guest.host_id,
            desired=self.desired,
            errors=tuple(self.errors),
            warnings=tuple(self.warnings),
        )
