"""Forms of the pages; they only check shape, the service functions decide what is accepted."""

from django import forms

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
