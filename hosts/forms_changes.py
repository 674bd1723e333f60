"""Forms of the profile, change request, audit and host partition pages.

They check the shape of the input and turn the structured profile editor into profile JSON; whether a
profile or a change is acceptable is decided by the service functions (hosts/profiles.py,
hosts/changes/requests.py), whose errors the views put back next to these fields.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from django import forms
from django.utils import timezone

from hosts.models import ChangeRequest, Domain, PinProfileRevision
from hosts.vocabulary import DEFAULT_PERIOD, SCHED_NAMES, percent_to_quota, quota_to_percent

QUOTA_NAMES = tuple(name for name in SCHED_NAMES if name.endswith("_quota"))
SCHED_HELP = {
    "cpu_shares": "Relative weight against other guests (2..262144; 1024 is the usual default).",
    "vcpu_period": "µs, 1000..1000000 (default 100000).",
    "vcpu_quota": "µs per period, for each vCPU; -1 is unlimited.",
    "emulator_period": "µs, 1000..1000000.",
    "emulator_quota": "µs per period for the emulator threads; -1 is unlimited.",
    "global_period": "µs, 1000..1000000.",
    "global_quota": "µs per period for the whole guest; -1 is unlimited.",
    "iothread_period": "µs, 1000..1000000.",
    "iothread_quota": "µs per period, for each I/O thread; -1 is unlimited.",
}
VCPUPIN_CHOICES = [
    ("", "Leave unchanged"),
    ("dedicated", "dedicated: one host CPU of its own per vCPU"),
    ("pool", "pool: every vCPU floats over the guest pool (or a cpulist)"),
    ("explicit", "explicit: a cpulist per vCPU"),
]
THREADPIN_CHOICES = [
    ("", "Leave unchanged"),
    ("housekeeping", "housekeeping: the host's reserved CPUs"),
    ("isolate", "isolate: one host CPU of its own"),
    ("cpulist", "cpulist: the CPUs given below"),
]
MONO = {"class": "mono", "spellcheck": "false", "autocomplete": "off"}


def _explicit_text(pins: dict[str, Any]) -> str:
    return "\n".join(f"{vcpu}: {cpus}" for vcpu, cpus in pins.items())


class ProfileForm(forms.Form):
    """The profile editor: structured fields for each part of a profile, or the profile JSON itself.

    ``content()`` builds the profile JSON from the structured fields, or takes the JSON textarea as it is
    when ``use_json`` is ticked (the page's script ticks it when someone types in the JSON).
    """

    name = forms.CharField(
        max_length=100,
        error_messages={"required": "Give the profile a name."},
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    comment = forms.CharField(
        label="Revision comment",
        required=False,
        max_length=200,
        help_text="What this revision changes and why; shown in the profile's history.",
    )
    vcpupin_strategy = forms.ChoiceField(label="vcpupin strategy", choices=VCPUPIN_CHOICES, required=False)
    vcpupin_pool_cpus = forms.CharField(
        label="vcpupin pool cpus",
        required=False,
        max_length=200,
        help_text="A cpulist such as 2-7,^5; empty: the host's guest pool (every online CPU not kept for "
        "housekeeping).",
        widget=forms.TextInput(attrs=MONO),
    )
    vcpupin_explicit = forms.CharField(
        label="vcpupin per vCPU",
        required=False,
        help_text="One vCPU per line as vCPU: cpulist, e.g. 0: 2 and 1: 3-4.",
        widget=forms.Textarea(attrs={"rows": 3, **MONO}),
    )
    emulatorpin_strategy = forms.ChoiceField(label="emulatorpin strategy", choices=THREADPIN_CHOICES, required=False)
    emulatorpin_cpus = forms.CharField(
        label="emulatorpin cpus", required=False, max_length=200, widget=forms.TextInput(attrs=MONO)
    )
    iothreadpin_strategy = forms.ChoiceField(label="iothreadpin strategy", choices=THREADPIN_CHOICES, required=False)
    iothreadpin_cpus = forms.CharField(
        label="iothreadpin cpus", required=False, max_length=200, widget=forms.TextInput(attrs=MONO)
    )
    allow_shared_emulator = forms.BooleanField(
        label="Allow the emulator or I/O threads on the guest's own dedicated vCPU CPUs",
        required=False,
        help_text="Breaks isolation: leave unticked unless you mean it.",
    )
    use_json = forms.BooleanField(label="Use the JSON below instead of the fields above", required=False)
    content_json = forms.CharField(
        label="Profile JSON",
        required=False,
        widget=forms.Textarea(attrs={"rows": 12, **MONO}),
    )

    def __init__(self, *args: Any, editing: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.editing = editing
        del self.fields["comment" if not editing else "name"]  # a new profile's first revision needs no comment
        for name in SCHED_NAMES:
            self.fields[f"sched_{name}"] = forms.IntegerField(
                label=name, required=False, help_text=SCHED_HELP[name], widget=forms.NumberInput(attrs=MONO)
            )
        for name in QUOTA_NAMES:
            self.fields[f"percent_{name}"] = forms.FloatField(
                label=f"{name} as % of one CPU",
                required=False,
                help_text="Used when the quota is empty; the page converts both ways.",
                widget=forms.NumberInput(attrs={"step": "any", "class": "percent"}),
            )

    @staticmethod
    def initial_from_content(content: dict[str, Any]) -> dict[str, Any]:
        """Return the form's initial values for a stored profile (to edit it into a new revision)."""
        initial: dict[str, Any] = {"content_json": json.dumps(content, indent=2)}
        vcpupin = content.get("vcpupin") or {}
        initial["vcpupin_strategy"] = vcpupin.get("strategy", "")
        if vcpupin.get("strategy") == "pool":
            initial["vcpupin_pool_cpus"] = vcpupin.get("cpus", "")
        elif vcpupin.get("strategy") == "explicit":
            initial["vcpupin_explicit"] = _explicit_text(vcpupin.get("cpus") or {})
        for section in ("emulatorpin", "iothreadpin"):
            rule = content.get(section) or {}
            initial[f"{section}_strategy"] = rule.get("strategy", "")
            initial[f"{section}_cpus"] = rule.get("cpus", "")
        sched = content.get("sched") or {}
        for name, value in sched.items():
            initial[f"sched_{name}"] = value
        for name in QUOTA_NAMES:
            period = sched.get(name.replace("_quota", "_period"))
            percent = quota_to_percent(sched.get(name), period)
            if percent is not None:
                initial[f"percent_{name}"] = round(percent, 3)
        initial["allow_shared_emulator"] = bool(content.get("allow_shared_emulator"))
        return initial

    def clean(self) -> dict[str, Any]:
        data = super().clean() or self.cleaned_data
        if data.get("use_json"):
            return data
        for name in QUOTA_NAMES:
            percent = data.get(f"percent_{name}")
            if percent is None or data.get(f"sched_{name}") is not None:
                continue
            period = data.get(f"sched_{name.replace('_quota', '_period')}") or DEFAULT_PERIOD
            try:
                data[f"sched_{name}"] = percent_to_quota(percent, period)
            except ValueError as exc:
                self.add_error(f"percent_{name}", str(exc))
        return data

    def _explicit_pins(self, text: str) -> dict[str, str] | None:
        pins: dict[str, str] = {}
        for number, line in enumerate(text.splitlines(), start=1):
            line = line.strip()
            if not line:
                continue
            vcpu, sep, cpus = line.partition(":")
            if not sep:
                self.add_error("vcpupin_explicit", f"Line {number} '{line}' is not 'vCPU: cpulist', e.g. '0: 2'.")
                return None
            pins[vcpu.strip()] = cpus.strip()
        return pins

    def content(self) -> Any:
        """Return the profile JSON the form describes (None when it cannot be read; errors are added)."""
        data = self.cleaned_data
        if data.get("use_json"):
            try:
                return json.loads(data.get("content_json") or "")
            except json.JSONDecodeError as exc:
                self.add_error("content_json", f"This is not valid JSON: {exc.msg} (line {exc.lineno}).")
                return None
        content: dict[str, Any] = {}
        strategy = data.get("vcpupin_strategy")
        if strategy == "pool":
            content["vcpupin"] = {"strategy": "pool"}
            if data.get("vcpupin_pool_cpus", "").strip():
                content["vcpupin"]["cpus"] = data["vcpupin_pool_cpus"].strip()
        elif strategy == "explicit":
            pins = self._explicit_pins(data.get("vcpupin_explicit", ""))
            if pins is None:
                return None
            content["vcpupin"] = {"strategy": "explicit", "cpus": pins}
        elif strategy:
            content["vcpupin"] = {"strategy": strategy}
        for section in ("emulatorpin", "iothreadpin"):
            strategy = data.get(f"{section}_strategy")
            if strategy:
                content[section] = {"strategy": strategy}
                if strategy == "cpulist":
                    content[section]["cpus"] = data.get(f"{section}_cpus", "").strip()
        sched = {name: data[f"sched_{name}"] for name in SCHED_NAMES if data.get(f"sched_{name}") is not None}
        if sched:
            content["sched"] = sched
        if data.get("allow_shared_emulator"):
            content["allow_shared_emulator"] = True
        return content

    def field_for(self, path: str) -> str | None:
        """Return the form field that shows a validator error about ``path`` (e.g. ``sched.vcpu_quota``)."""
        if self.cleaned_data.get("use_json"):
            return "content_json"
        section, _, rest = path.partition(".")
        if section == "vcpupin":
            if rest.startswith("cpus"):
                strategy = self.cleaned_data.get("vcpupin_strategy")
                return "vcpupin_explicit" if strategy == "explicit" else "vcpupin_pool_cpus"
            return "vcpupin_strategy"
        if section in ("emulatorpin", "iothreadpin"):
            return f"{section}_cpus" if rest.startswith("cpus") else f"{section}_strategy"
        if section == "sched" and rest in SCHED_NAMES:
            return f"sched_{rest}"
        if section == "allow_shared_emulator":
            return section
        return None


def _revision_label(revision: PinProfileRevision) -> str:
    return f"{revision.profile.name} · revision {revision.number}" + (
        f" ({revision.comment})" if revision.comment else ""
    )


class RevisionChoiceField(forms.ModelChoiceField):  # type: ignore[type-arg]
    def label_from_instance(self, obj: Any) -> str:
        return _revision_label(obj)


class GuestChoiceField(forms.ModelMultipleChoiceField):  # type: ignore[type-arg]
    def label_from_instance(self, obj: Any) -> str:
        return f"{obj.name} on {obj.host.name}"


class ChangeRequestForm(forms.Form):
    """Propose applying one profile revision to guests on any hosts."""

    profile_revision = RevisionChoiceField(
        label="Profile revision",
        queryset=PinProfileRevision.objects.select_related("profile").order_by("profile__name", "-number"),
        empty_label="Pick a profile revision",
    )
    domains = GuestChoiceField(
        label="Guests",
        queryset=Domain.objects.select_related("host").order_by("host__name", "name"),
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "Pick at least one guest."},
    )
    scope = forms.ChoiceField(choices=ChangeRequest.Scope.choices, initial=ChangeRequest.Scope.BOTH)
    apply_at = forms.DateTimeField(
        label="Apply at",
        required=False,
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S"],
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Why this change is needed; the approver reads it.",
        error_messages={"required": "Say why this change is needed."},
    )
    previewed = forms.CharField(required=False, widget=forms.HiddenInput)

    def clean_apply_at(self) -> Any:
        value = self.cleaned_data.get("apply_at")
        if value is not None and value < timezone.now():
            raise forms.ValidationError("This time has passed; leave it empty to apply as soon as it is approved.")
        return value

    def fingerprint(self) -> str:
        """Identify what a preview showed: the revision, the guests and the scope."""
        data = self.cleaned_data
        ids = ",".join(str(pk) for pk in sorted(d.pk for d in data["domains"]))
        return f"{data['profile_revision'].pk}:{ids}:{data['scope']}"


class DecisionForm(forms.Form):
    comment = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))


class PartitionForm(forms.Form):
    housekeeping_cpus = forms.CharField(
        label="Housekeeping CPUs",
        required=False,
        max_length=200,
        help_text="A cpulist such as 0-1; empty: no housekeeping CPUs, every online CPU is in the guest pool.",
        widget=forms.TextInput(attrs=MONO),
    )


def add_service_errors(form: forms.Form, errors: Iterable[tuple[str, list[str]]], field_for: Any = None) -> None:
    """Put a service's errors (field path, messages) next to the form fields they concern."""
    for path, messages in errors:
        name = field_for(path) if field_for else (path if path in form.fields else None)
        for message in messages:
            if name is None or name == "content_json":
                form.add_error(name, message if path in message else f"{path}: {message}")
            else:
                form.add_error(name, message)
