"""Run a private OpenSSH server on a loopback port, with a host key, a client key and a known_hosts file of its own.

``qemu+ssh`` and ``qemu+libssh`` URIs log in here and run ``virt-ssh-helper`` (from libvirt-daemon), which
joins the daemon's UNIX socket given as ``socket=`` in the URI: this is how the test fleet proves libvirt's
SSH transports. Nothing of the machine's own ssh setup is used or changed: the server has its own config,
host key, ``authorized_keys`` (the client key, with ``restrict``: no pty, no forwarding) and pid file under
the given directory, and the client verifies the server against a ``known_hosts`` file made here. The server
runs in the foreground as a child started in a session of its own and is stopped by pid. Harness code only.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from hosts.harness.processes import Proc, end_processes, port_open

SSHD = "/usr/sbin/sshd"
# sshd refuses to start without its privilege separation directory (normally made by the service unit).
PRIVSEP_DIR = Path("/run/sshd")


class SSHDError(RuntimeError):
    """The test sshd did not start or a key could not be made."""


def _keygen(path: Path, comment: str) -> None:
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if result.returncode != 0:
        raise SSHDError(f"ssh-keygen failed: {result.stderr.strip()}")


@dataclass
class LoopbackSSHD:
    """One sshd on ``127.0.0.1:port`` whose only way in is the key this object made."""

    directory: Path
    port: int
    user: str = "root"
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def host_key(self) -> Path:
        return self.directory / "ssh_host_ed25519_key"

    @property
    def client_key(self) -> Path:
        """The private key a client names as ``keyfile=``."""
        return self.directory / "client" / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        """A known_hosts file holding this server's host key for ``[127.0.0.1]:port``."""
        return self.directory / "client" / "known_hosts"

    @property
    def config(self) -> Path:
        return self.directory / "sshd_config"

    @property
    def log(self) -> Path:
        return self.directory / "sshd.log"

    def host_key_line(self) -> str:
        """This server's host key as a known_hosts line."""
        kind, key, *_ = self.host_key.with_suffix(".pub").read_text().split()
        return f"[127.0.0.1]:{self.port} {kind} {key}\n"

    def prepare(self) -> None:
        """Make the keys, authorized_keys, known_hosts and sshd_config (kept if already made)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        _keygen(self.host_key, "isoweb test sshd")
        _keygen(self.client_key, "isoweb worker")
        public = self.client_key.with_suffix(".pub").read_text().strip()
        authorized = self.directory / "authorized_keys"
        authorized.write_text(f"restrict {public}\n")
        authorized.chmod(0o600)
        self.known_hosts.write_text(self.host_key_line())
        self.config.write_text(
            f"Port {self.port}\n"
            "ListenAddress 127.0.0.1\n"
            f"HostKey {self.host_key}\n"
            f"PidFile {self.directory / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {authorized}\n"
            # The key files live in the checkout, which may sit under a world-writable directory such as
            # /tmp: StrictModes would then refuse every key ("bad ownership or modes for directory /tmp").
            # The files themselves are 0600 and owned by the test user; this sshd serves loopback tests only.
            "StrictModes no\n"
            f"AllowUsers {self.user}\n"
            "PermitRootLogin prohibit-password\n"
            "PubkeyAuthentication yes\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "UsePAM no\n"
            "X11Forwarding no\n"
            "AllowTcpForwarding no\n"
            "PermitTTY no\n"
            "PrintMotd no\n"
            "LogLevel VERBOSE\n"
        )

    def start(self, timeout: float = 15.0) -> None:
        """Start sshd in the foreground (``-D``) and wait until it accepts connections."""
        if self.proc is not None and self.proc.poll() is None:
            return
        self._end_left_over()
        if port_open(self.port):
            raise SSHDError(f"port {self.port} is taken by another program; choose another port for the test sshd")
        self.prepare()
        PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
        check = subprocess.run([SSHD, "-t", "-f", str(self.config)], capture_output=True, text=True, timeout=30)
        if check.returncode != 0:
            raise SSHDError(f"sshd refused its config: {check.stderr.strip()}")
        log = open(self.log, "ab")  # noqa: SIM115 - sshd's log for the life of the process
        self.proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(self.config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SSHDError(f"sshd exited at start: {self.log.read_text()[-2000:]}")
            if port_open(self.port):
                return
            time.sleep(0.1)
        self.stop()
        raise SSHDError(f"sshd did not listen on port {self.port} within {timeout:g} s")

    def _end_left_over(self) -> None:
        """End an sshd a crashed run left behind on this config (found by its pid file and command line)."""
        try:
            pid = int((self.directory / "sshd.pid").read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return
        if str(self.config).encode() in cmdline and (proc := Proc.of(pid, "left-over test sshd")) is not None:
            end_processes([proc])

    def stop(self) -> None:
        """Stop this sshd (and the sessions it forked, which share its process group) by pid."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            proc = Proc.of(self.proc.pid, "test sshd")
            if proc is not None:
                end_processes([proc])
        self.proc.wait(timeout=5)
        self.proc = None
