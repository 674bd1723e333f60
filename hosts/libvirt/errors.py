"""libvirt's errors as the project's own: transient (retry later) or permanent (fail now), in plain words."""

from __future__ import annotations

import libvirt

# libvirt error codes, with what they mean to an operator.
_PLAIN_WORDS = {
    libvirt.VIR_ERR_SYSTEM_ERROR: "the host cannot be reached",
    libvirt.VIR_ERR_NO_CONNECT: "the host cannot be reached",
    libvirt.VIR_ERR_RPC: "the connection to the host failed",
    libvirt.VIR_ERR_AUTH_FAILED: "authentication to the host failed",
    libvirt.VIR_ERR_NO_DOMAIN: "no such guest on this host",
    libvirt.VIR_ERR_OPERATION_INVALID: "not possible in the guest's current state",
    libvirt.VIR_ERR_INVALID_ARG: "libvirt refused an argument",
    libvirt.VIR_ERR_CONFIG_UNSUPPORTED: "the host's libvirt does not support this configuration",
    libvirt.VIR_ERR_NO_SUPPORT: "the host's hypervisor does not support this",
    libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED: "the host's libvirt does not support this option",
    libvirt.VIR_ERR_OPERATION_UNSUPPORTED: "the host's libvirt does not support this operation",
    libvirt.VIR_ERR_OPERATION_TIMEOUT: "the host did not answer in time",
}


_TRANSIENT_CODES = {
    libvirt.VIR_ERR_SYSTEM_ERROR,
    libvirt.VIR_ERR_NO_CONNECT,
    libvirt.VIR_ERR_INVALID_CONN,
    libvirt.VIR_ERR_RPC,
    libvirt.VIR_ERR_OPERATION_TIMEOUT,
    libvirt.VIR_ERR_AGENT_UNRESPONSIVE,
}


class VirtError(Exception):
    """A libvirt failure, told in plain words.

    ``permanent`` says whether retrying can help (a sync of a host that refused for a permanent reason is
    retried only at the normal interval); ``unresponsive`` says the host did not answer at all (it hangs,
    or something that is not libvirt holds its port), which the inventory shows apart from "down".
    """

    permanent = True
    unresponsive = False

    def __init__(self, message: str, *, code: int | None = None, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.detail = detail


class TransientVirtError(VirtError):
    """The host is unreachable or the connection dropped: retry later."""

    permanent = False


class HostTimeout(TransientVirtError):
    """The host did not answer within its deadline; the call may still be stuck inside libvirt."""

    unresponsive = True


class PermanentVirtError(VirtError):
    """The request cannot succeed as asked (no such guest, invalid, unsupported)."""

    permanent = True


def translate_error(exc: libvirt.libvirtError, uri: str = "") -> VirtError:
    """Turn a libvirtError into a project error whose message an operator can act on."""
    code = exc.get_error_code() or 0
    detail = (exc.get_error_message() or str(exc)).strip()
    lost = code == libvirt.VIR_ERR_INTERNAL_ERROR and (
        "client socket is closed" in detail or "connection" in detail.lower()
    )
    words = "the connection to the host was lost" if lost else _PLAIN_WORDS.get(code, "libvirt failed")
    where = f" ({uri})" if uri else ""
    message = f"{words}{where}: {detail}" if detail else f"{words}{where}"
    if "keepalive" in detail.lower():
        # libvirt closed the connection because the host stopped answering its keepalive probes: it hangs.
        return HostTimeout(f"the host stopped answering{where}: {detail}", code=code, detail=detail)
    cls = TransientVirtError if lost or code in _TRANSIENT_CODES else PermanentVirtError
    return cls(message, code=code, detail=detail)
