"""Run a fleet of independent libvirt hosts on this one machine, with tiny real guests.

Each host is its own ``libvirtd`` in a private mount namespace: private directories are bind-mounted over
``/run/libvirt``, ``/var/lib/libvirt``, ``/etc/libvirt``, ``/var/cache/libvirt`` and ``/var/log/libvirt``,
and the daemon listens on its own loopback TCP port, reachable as ``qemu+tcp://127.0.0.1:PORT/system``.
Guests are 64 MiB, diskless and idle, except the CPU burner, whose boot sector is an endless ``jmp $``
that keeps vCPU 0 at 100 %. The demo (``make run``) and the tests use different fleets (names, ports and
directories) so they never disturb each other. Only the daemons and guests a fleet started are stopped:
``down`` destroys the guests through their daemon while it answers, stops the daemon, and then ends by pid
every qemu process its daemon recorded (``<host dir>/run/qemu/<guest>.pid``), so no guest outlives its fleet
even when the daemon was already dead, hung, or held guests the fleet's spec does not name.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

from hosts.harness.guests import (
    define_and_start,
    destroy_and_undefine,
    list_domain_names,
    remove_every_guest,
    start_if_stopped,
)
from hosts.harness.processes import Proc, bounded, end_processes, is_qemu_of, pid_alive, port_open, wait_gone
from hosts.harness.tls import PKI, libvirtd_tls_config
from hosts.libvirt.connection import disconnect
from hosts.libvirt.errors import VirtError

log = logging.getLogger(__name__)

BIND_MOUNTS = {
    "run": "/run/libvirt",
    "lib": "/var/lib/libvirt",
    "etc": "/etc/libvirt",
    "cache": "/var/cache/libvirt",
    "log": "/var/log/libvirt",
}


class FleetError(RuntimeError):
    """The fleet could not be brought up (a daemon did not start, a guest did not define)."""


@dataclass(frozen=True)
class GuestSpec:
    """One tiny guest: vCPU count, iothreads, optional pins and caps, and whether it burns CPU."""

    suffix: str
    vcpus: int = 2
    iothreads: int = 1
    burner: bool = False
    vcpupin: dict[int, str] = field(default_factory=dict)
    emulatorpin: str | None = None
    vcpu_quota: int | None = None
    autostart: bool = True


DEFAULT_GUESTS = (
    GuestSpec("web", vcpus=2),
    GuestSpec("db", vcpus=4, vcpupin={0: "1", 1: "1"}, emulatorpin="0"),
    GuestSpec("batch", vcpus=3, iothreads=2),
)


def kvm_usable() -> bool:
    """Return whether /dev/kvm can be opened; guests fall back to TCG otherwise."""
    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
    except OSError:
        return False
    os.close(fd)
    return True


@dataclass
class FleetHost:
    """One libvirt daemon of a fleet."""

    fleet: Fleet
    index: int

    @property
    def name(self) -> str:
        return f"{self.fleet.prefix}-host{self.index + 1}"

    @property
    def port(self) -> int:
        return self.fleet.base_port + self.index

    @property
    def uri(self) -> str:
        return f"qemu+tcp://127.0.0.1:{self.port}/system"

    @property
    def directory(self) -> Path:
        return self.fleet.state_dir / self.name

    @property
    def pid_file(self) -> Path:
        return self.directory / "libvirtd.pid"

    def guest_name(self, spec: GuestSpec) -> str:
        return f"{self.fleet.prefix}{self.index + 1}-{spec.suffix}"

    @property
    def guest_names(self) -> list[str]:
        return [self.guest_name(spec) for spec in self.fleet.guests_for(self.index)]

    @property
    def tls_port(self) -> int:
        """The daemon's TLS port when the fleet has a PKI (``Fleet.tls``): ``Fleet.tls_base_port`` + index."""
        return self.fleet.tls_base_port + self.index

    def tls_uri(self, pkipath: Path) -> str:
        return f"qemu+tls://127.0.0.1:{self.tls_port}/system?pkipath={pkipath}"

    @property
    def socket_path(self) -> Path:
        """The daemon's read-write UNIX socket as seen from outside its mount namespace (for ``socket=``)."""
        return self.directory / "run" / "libvirt-sock"

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def is_running(self) -> bool:
        return self.pid() is not None

    def _write_config(self) -> None:
        for sub in BIND_MOUNTS:
            (self.directory / sub).mkdir(parents=True, exist_ok=True)
        tls = libvirtd_tls_config(self.fleet.tls, self.tls_port) if self.fleet.tls else "listen_tls = 0\n"
        (self.directory / "etc" / "libvirtd.conf").write_text(
            f"{tls}"
            "listen_tcp = 1\n"
            'listen_addr = "127.0.0.1"\n'
            f'tcp_port = "{self.port}"\n'
            'auth_tcp = "none"\n'
            'auth_unix_rw = "none"\n'
            "keepalive_interval = 5\n"
            "max_clients = 200\n"
            "max_workers = 20\n"
            "max_client_requests = 20\n"
        )
        (self.directory / "etc" / "qemu.conf").write_text(
            'user = "root"\ngroup = "root"\nsecurity_driver = "none"\nstdio_handler = "file"\ndynamic_ownership = 0\n'
        )

    def start(self, timeout: float = 20.0) -> None:
        """Start this host's libvirtd unless it already runs, and wait until it accepts connections."""
        if self.is_running() and port_open(self.port):
            return
        if port_open(self.port):
            raise FleetError(
                f"{self.name}: port {self.port} is taken by another program (another fleet or test run?); "
                "stop it or move this fleet to other ports"
            )
        self._write_config()
        self.pid_file.unlink(missing_ok=True)
        mounts = " && ".join(
            f"mkdir -p {target} && mount --bind {self.directory / source} {target}"
            for source, target in BIND_MOUNTS.items()
        )
        script = f"{mounts} && exec libvirtd --daemon --listen --pid-file {self.pid_file}"
        # Paths here are built from the fleet's own directory and fixed names, never from user input.
        result = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise FleetError(f"{self.name}: libvirtd did not start: {result.stderr.strip()}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.is_running() and port_open(self.port):
                return
            time.sleep(0.1)
        log_file = self.directory / "log" / "libvirtd.log"
        tail = log_file.read_text()[-2000:] if log_file.exists() else ""
        raise FleetError(f"{self.name}: libvirtd did not listen on port {self.port} in time. {tail}")

    def stop_daemon(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        """Stop this host's libvirtd (its guests keep running, as with a real daemon restart).

        ``sig`` first (continuing a daemon left under SIGSTOP), SIGKILL after ``timeout`` s; raises FleetError
        if the daemon is still there after that.
        """
        disconnect(self.uri)
        pid = self.pid()
        daemon = Proc.of(pid, f"{self.name} libvirtd") if pid is not None else None
        if daemon is None:
            return
        daemon.send(sig)
        if daemon.state() in ("T", "t"):
            daemon.send(signal.SIGCONT)
        if wait_gone([daemon], timeout):
            daemon.send(signal.SIGKILL)
            if wait_gone([daemon], 5.0):
                raise FleetError(f"{self.name}: libvirtd (pid {daemon.pid}) survived SIGKILL")
        self.pid_file.unlink(missing_ok=True)

    @property
    def qemu_state_dir(self) -> Path:
        """Where this host's libvirtd keeps each running guest's pid file and status XML (its /run/libvirt/qemu)."""
        return self.directory / "run" / "qemu"

    def qemu_processes(self) -> dict[str, Proc]:
        """Return the qemu process of every guest this host's daemon started and recorded, by guest name.

        Read from the daemon's own records (``<guest>.pid``, else the pid in the status XML ``<guest>.xml``),
        so they are found whether the daemon still runs or not; a recorded pid is taken only while its process
        is that guest's qemu (its command line says ``-name guest=<guest>``), never a pid since reused.
        """
        found: dict[str, Proc] = {}
        if not self.qemu_state_dir.is_dir():
            return found
        # Each guest has <name>.xml (its status) and <name>.pid; driver.pid is the daemon's own and has no XML.
        names = {path.stem for path in self.qemu_state_dir.iterdir() if path.suffix in (".pid", ".xml")}
        for name in sorted(names - {"driver"}):
            for pid in self._recorded_pids(name):
                proc = Proc.of(pid, f"{self.name} guest {name}")
                if proc is not None and proc.alive() and is_qemu_of(pid, name):
                    found[name] = proc
                    break
        return found

    def _recorded_pids(self, name: str) -> list[int]:
        pids: list[int] = []
        with contextlib.suppress(OSError, ValueError):
            pids.append(int((self.qemu_state_dir / f"{name}.pid").read_text().strip()))
        try:
            status = (self.qemu_state_dir / f"{name}.xml").read_text()
        except OSError:
            status = ""
        if match := re.search(r"<domstatus\b[^>]*\bpid=['\"](\d+)['\"]", status):
            pids.append(int(match.group(1)))
        return pids

    def forget_dead_guests(self) -> None:
        """Remove the stopped daemon's records of guests whose qemu is gone (the next start finds none)."""
        alive = set(self.qemu_processes())
        if not self.qemu_state_dir.is_dir():
            return
        for path in self.qemu_state_dir.iterdir():
            if path.suffix in (".pid", ".xml") and path.stem not in alive | {"driver"} and path.is_file():
                path.unlink(missing_ok=True)

    def guest_xml(self, spec: GuestSpec) -> str:
        name = escape(self.guest_name(spec))
        kind = "kvm" if self.fleet.use_kvm else "qemu"
        cputune = "".join(f"<vcpupin vcpu='{n}' cpuset='{c}'/>" for n, c in spec.vcpupin.items())
        if spec.emulatorpin:
            cputune += f"<emulatorpin cpuset='{spec.emulatorpin}'/>"
        if spec.vcpu_quota:
            cputune += f"<period>100000</period><quota>{spec.vcpu_quota}</quota>"
        disk = ""
        if spec.burner:
            image = self.directory / f"{self.guest_name(spec)}.img"
            boot = bytearray(512)
            boot[0:2] = b"\xeb\xfe"  # jmp $: spin forever on vCPU 0
            boot[510:512] = b"\x55\xaa"  # boot signature
            image.write_bytes(bytes(boot))
            disk = (
                "<disk type='file' device='disk'><driver name='qemu' type='raw'/>"
                f"<source file='{escape(str(image))}'/><target dev='hda' bus='ide'/></disk>"
            )
        return (
            f"<domain type='{kind}'><name>{name}</name>"
            "<memory unit='MiB'>64</memory>"
            f"<vcpu placement='static'>{spec.vcpus}</vcpu>"
            f"<iothreads>{spec.iothreads}</iothreads>"
            f"<cputune>{cputune}</cputune>"
            "<os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>"
            "<on_crash>destroy</on_crash>"
            f"<devices>{disk}<memballoon model='none'/></devices>"
            "</domain>"
        )

    def ensure_guests(self) -> None:
        """Define and start this host's guests; one already defined is only started, keeping its tuning."""
        present = set(list_domain_names(self.uri))
        for spec in self.fleet.guests_for(self.index):
            name = self.guest_name(spec)
            if name not in present:
                define_and_start(self.uri, self.guest_xml(spec), start=spec.autostart)
            elif spec.autostart:
                start_if_stopped(self.uri, name)

    def reset_guests(self, names: list[str]) -> None:
        """Put these guests back as their specs define them (pins, caps, vCPUs), live and in the config.

        They are stopped, undefined and defined again from their spec (a new UUID) and started as at first.
        """
        for name in names:
            destroy_and_undefine(self.uri, name)
        self.ensure_guests()


@dataclass
class Fleet:
    """A set of libvirt hosts on this machine, named by ``prefix``, listening from ``base_port`` up."""

    prefix: str
    hosts: int
    base_port: int
    state_dir: Path
    guests: tuple[GuestSpec, ...] = DEFAULT_GUESTS
    burner_on: tuple[int, ...] = (0,)
    burner_quota: int | None = None
    burner_running: bool = True
    extra_guests: int = 0
    use_kvm: bool = field(default_factory=kvm_usable)
    tls: PKI | None = None  # when set, every daemon also listens for TLS from tls_base_port up
    tls_base_port: int = 0

    def guests_for(self, index: int) -> list[GuestSpec]:
        specs = list(self.guests)
        specs += [GuestSpec(f"extra{n:03d}", vcpus=1, iothreads=0) for n in range(self.extra_guests)]
        if index in self.burner_on:
            specs.append(
                GuestSpec(
                    "burn",
                    vcpus=1,
                    iothreads=0,
                    burner=True,
                    vcpu_quota=self.burner_quota,
                    autostart=self.burner_running,
                )
            )
        return specs

    @property
    def members(self) -> list[FleetHost]:
        return [FleetHost(self, i) for i in range(self.hosts)]

    def host(self, index: int) -> FleetHost:
        return FleetHost(self, index)

    def up(self) -> list[FleetHost]:
        """Start every daemon and guest that is not already running; safe to run again."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        for member in self.members:
            member.start()
            member.ensure_guests()
        return self.members

    def down(self, guest_timeout: float = 30.0) -> None:
        """Remove this fleet's guests, stop its daemons, and end every qemu process they leave; nothing else.

        Each daemon that runs is asked to destroy and undefine all its guests (within ``guest_timeout`` s, so
        a hung daemon cannot hold this up), then stopped. Whatever qemu processes its records still name are
        then ended by pid (SIGTERM, then SIGKILL). Raises FleetError naming any process that survived.
        """
        survivors: list[Proc] = []
        for member in self.members:
            qemus = member.qemu_processes()
            pid = member.pid()
            daemon = Proc.of(pid, f"{member.name} libvirtd") if pid is not None else None
            if daemon is not None and daemon.state() in ("T", "t"):
                daemon.send(signal.SIGCONT)  # a daemon left under SIGSTOP can still destroy its guests
            if member.is_running():
                problems = bounded(functools.partial(remove_every_guest, member.uri), guest_timeout)
                for problem in problems:
                    log.warning("%s: %s", member.name, problem)
            try:
                member.stop_daemon()
            except FleetError as exc:
                log.warning("%s", exc)
                if (pid := member.pid()) is not None and (daemon := Proc.of(pid, f"{member.name} libvirtd")):
                    survivors.append(daemon)
            qemus.update(member.qemu_processes())
            behind = [proc for proc in qemus.values() if proc.alive()]
            left = end_processes(behind)
            if behind:
                log.warning(
                    "%s: ended by pid %d qemu process(es) its daemon left: %s",
                    member.name,
                    len(behind) - len(left),
                    ", ".join(f"{proc.what} (pid {proc.pid})" for proc in behind),
                )
            survivors += left
            member.forget_dead_guests()
        if survivors:
            raise FleetError(
                "still running after SIGKILL: " + ", ".join(f"{proc.what} (pid {proc.pid})" for proc in survivors)
            )

    def status(self) -> list[dict[str, object]]:
        rows: list[dict[str, object]] = []
        for member in self.members:
            guests: list[str] = []
            running = member.is_running()
            if running:
                try:
                    guests = list_domain_names(member.uri)
                except VirtError as exc:
                    guests = [f"(unreachable: {exc.message})"]
            rows.append(
                {
                    "name": member.name,
                    "uri": member.uri,
                    "pid": member.pid(),
                    "running": running,
                    "guests": guests,
                }
            )
        return rows


def demo_fleet(state_root: Path) -> Fleet:
    """The fleet ``make run`` starts: three hosts, the burner capped at half a CPU to spare the machine."""
    return Fleet(prefix="demo", hosts=3, base_port=16601, state_dir=state_root / "fleet-demo", burner_quota=50000)


def test_fleet(state_root: Path) -> Fleet:
    """The fleet the tests start, with its own names, ports and directories.

    Its CPU burner is defined but left shut off: the tests that need it start it, so the rest of the run
    does not compete with a guest spinning on one of the machine's CPUs.
    """
    base = int(os.environ.get("ISOWEB_TEST_FLEET_PORT", "16711"))
    prefix = os.environ.get("ISOWEB_TEST_FLEET_PREFIX", "isotest")
    return Fleet(prefix=prefix, hosts=3, base_port=base, state_dir=state_root / f"fleet-{prefix}", burner_running=False)
