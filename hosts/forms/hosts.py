"""Forms of the host pages: adding, editing, maintenance and removal of a host, and its CPU partition."""

from typing import Any

from django import forms

from hosts.forms.common import MONO

URI_HELP = (
    "Accepted forms: qemu:///system (this machine), qemu+unix:///system, "
    "qemu+tcp://host:port/system (unencrypted: use only on a trusted network), "
    "qemu+tls://host/system?pkipath=/dir, qemu+ssh://user@host/system?keyfile=/path. "
    "The ext transport and the command=, netcat= and proxy= parameters are refused because they run programs."
)


class HostAddForm(forms.Form):
    """Ask an admin for a new host's name and libvirt URI."""

    name = forms.CharField(
        max_length=100,
        help_text="A short name people will recognise, e.g. rack3-kvm07.",
        widget=forms.TextInput(attrs={"autofocus": True, "autocomplete": "off"}),
    )
    uri = forms.CharField(
        label="libvirt URI",
        max_length=500,
        help_text=URI_HELP,
        widget=forms.TextInput(
            attrs={
                "placeholder": "qemu+tls://kvm07.example.com/system",
                "autocomplete": "off",
                "spellcheck": "false",
            }
        ),
    )
    allow_unverified = forms.BooleanField(
        label="Allow unverified connections",
        required=False,
        help_text="Only if the URI must switch off checking the host (no_verify=1): "
        "anyone on the network path could then pose as this host. The host is flagged wherever it is shown.",
    )
    unverified_reason = forms.CharField(
        label="Reason", required=False, max_length=300, help_text="Required when allowing unverified connections."
    )


class PartitionForm(forms.Form):
    """Ask an admin which CPUs of a host are kept for housekeeping; its other online CPUs are the guest pool."""

    housekeeping_cpus = forms.CharField(
        label="Housekeeping CPUs",
        required=False,
        max_length=200,
        help_text="A cpulist such as 0-1; empty: no housekeeping CPUs, every online CPU is in the guest pool.",
        widget=forms.TextInput(attrs=MONO),
    )


class HostEditForm(forms.Form):
    """Ask an admin for a host's new name and libvirt URI (validated as when it was added)."""

    name = forms.CharField(max_length=100, widget=forms.TextInput(attrs={"autocomplete": "off"}))
    uri = forms.CharField(
        label="libvirt URI",
        max_length=500,
        help_text=URI_HELP + " A new URI is synced at once; guests the new daemon does not have leave the inventory.",
        widget=forms.TextInput(attrs=MONO),
    )


class MaintenanceForm(forms.Form):
    """Ask why a host goes into maintenance (shown on its pages and to anyone whose change it refuses)."""

    reason = forms.CharField(
        max_length=300,
        help_text="E.g. BIOS update, kernel upgrade, hardware fault. While in maintenance the host is not synced, "
        "charted or changed, and change requests on its guests are refused with this reason.",
    )


class HostRemoveForm(forms.Form):
    """Ask the admin to type the host's name to confirm its removal."""

    confirm = forms.CharField(
        label="Type the host's name to confirm",
        max_length=100,
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )

    def __init__(self, *args: Any, host_name: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.host_name = host_name

    def clean_confirm(self) -> str:
        value = str(self.cleaned_data["confirm"]).strip()
        if value != self.host_name:
            raise forms.ValidationError(f"Type {self.host_name} exactly to remove this host.")
        return value
