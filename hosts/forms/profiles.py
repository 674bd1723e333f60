"""The profile editor's form: structured fields for each part of a pin profile, or its JSON as typed.

It turns the fields into profile JSON and a stored profile back into fields; whether the JSON is a valid
profile is decided by hosts/planning/schema.py, whose errors ``field_for`` places next to the field showing them.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms

from hosts.forms.common import MONO
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
    # The live check's host, guests and scope: not part of the profile, posted only so a failed save shows
    # the check as it was left instead of jumping back to the first host.
    plan_host = forms.CharField(required=False, max_length=20, widget=forms.HiddenInput)
    plan_guests = forms.CharField(required=False, max_length=2000, widget=forms.HiddenInput)
    plan_scope = forms.CharField(required=False, max_length=10, widget=forms.HiddenInput)
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
                continue  # the quota itself was given (the page's script fills it, and the period, from a %)
            period_field = f"sched_{name.replace('_quota', '_period')}"
            if data.get(period_field) is None:
                # A cap given as a percentage was worked out against this period: store it with the quota, so
                # the quota means that percentage on every guest, whatever period the guest had before.
                data[period_field] = DEFAULT_PERIOD
            try:
                data[f"sched_{name}"] = percent_to_quota(percent, data[period_field])
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
