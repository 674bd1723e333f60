"""Forms of the host pages: adding a host and setting its CPU partition."""

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
