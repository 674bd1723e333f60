"""Secure transports, proven end to end: inventory sync, an applied change and the charts over qemu+tls and SSH.

The tests start one libvirt daemon of their own that listens for TLS (a CA, server and client certificates
made here, hosts/harness/tls.py) and a private sshd on loopback (a host key, a client key and a known_hosts file
made here, hosts/harness/sshd.py) whose logins reach the daemon's UNIX socket through ``nc -U`` (libvirt uses
netcat, not virt-ssh-helper, when the URI names a ``socket=``). The same daemon also listens on plain TCP,
which only the witness (virsh) uses. Each check also has its failing side: a server certificate from another
CA, a host key the worker does not know, and the URI parameters that turn verification off are refused.

qemu+ssh runs OpenSSH, which checks the host key against the known_hosts files of the user the process runs as;
libvirt passes it none of its own. A test must not write to this machine's ``~/.ssh/known_hosts``, so this module,
when collected (before the session's Celery worker is started, which inherits it), puts first on PATH an
``ssh`` that is the real /usr/bin/ssh with ``UserKnownHostsFile`` set to the test sshd's known_hosts file and
strict checking: on a real machine, the worker user's own known_hosts does this.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client

from hosts.harness.fleet import Fleet, FleetHost, GuestSpec
from hosts.harness.sshd import LoopbackSSHD
from hosts.harness.tls import PKI, make_pki
from hosts.inventory import create_host, sync_host
from hosts.live import history, push
from hosts.live.collector import HostCollector
from hosts.models import AuditEvent, Domain, Host
from tests.conftest import virsh, wait_for

pytestmark = [pytest.mark.fleet, pytest.mark.django_db(transaction=True)]

# Four loopback ports from here: the daemon's TCP (witness only) and TLS ports, the sshd, one spare.
BASE_PORT = int(os.environ.get("ISOWEB_TEST_TRANSPORT_PORT", "16790"))
PREFIX = os.environ.get("ISOWEB_TEST_FLEET_PREFIX", "isotest") + "sec"
STATE = Path(settings.VAR_DIR) / f"fleet-{PREFIX}"
KNOWN_HOSTS = STATE / "sshd" / "client" / "known_hosts"


def _openssh_with_the_tests_known_hosts() -> None:
    shim = STATE / "bin" / "ssh"
    shim.parent.mkdir(parents=True, exist_ok=True)
    shim.write_text(
        "#!/bin/sh\n"
        f"exec /usr/bin/ssh -o UserKnownHostsFile={KNOWN_HOSTS} -o GlobalKnownHostsFile=/dev/null"
        ' -o StrictHostKeyChecking=yes -o CheckHostIP=no "$@"\n'
    )
    shim.chmod(0o755)
    if not os.environ["PATH"].startswith(f"{shim.parent}:"):
        os.environ["PATH"] = f"{shim.parent}:{os.environ['PATH']}"


_openssh_with_the_tests_known_hosts()


@dataclass
class SecureHost:
    """The transport tests' daemon with the ways in: its TLS PKI and the sshd in front of its socket."""

    member: FleetHost
    pki: PKI
    sshd: LoopbackSSHD

    @property
    def witness(self) -> str:
        return self.member.uri  # plain TCP on loopback, for virsh only

    @property
    def guest(self) -> str:
        return self.member.guest_names[0]

    def tls_uri(self, pkipath: Path | None = None) -> str:
        return self.member.tls_uri(pkipath or self.pki.client_dir)

    def ssh_uri(self, host: str = "127.0.0.1") -> str:
        return (
            f"qemu+ssh://root@{host}:{self.sshd.port}/system"
            f"?socket={self.member.socket_path}&keyfile={self.sshd.client_key}&no_tty=1"
        )


@pytest.fixture(scope="module")
def secure_host() -> Iterator[SecureHost]:
    state = STATE
    pki = make_pki(state / "pki")
    fleet = Fleet(
        prefix=PREFIX,
        hosts=1,
        base_port=BASE_PORT,
        state_dir=state,
        guests=(GuestSpec("web", vcpus=2, iothreads=0),),
        burner_on=(),
        tls=pki,
        tls_base_port=BASE_PORT + 1,
    )
    sshd = LoopbackSSHD(state / "sshd", BASE_PORT + 2)
    assert sshd.known_hosts == KNOWN_HOSTS
    try:
        fleet.up()
        sshd.start()
        yield SecureHost(fleet.members[0], pki, sshd)
    finally:
        sshd.stop()
        fleet.down()


def _register(client: Client, name: str, uri: str, **extra: Any) -> dict[str, Any]:
    response = client.post("/api/hosts/", {"name": name, "uri": uri, **extra}, content_type="application/json")
    assert response.status_code == 201, response.content
    return response.json()


def _sync_and_check(host_id: int, guest: str) -> Host:
    result = sync_host(host_id)
    assert result.ok, result.error
    host = Host.objects.get(pk=host_id)
    assert host.status == Host.Status.UP
    assert host.cpus.exists() and host.libvirt_version
    assert Domain.objects.get(host=host, name=guest).state == Domain.State.RUNNING
    return host


def _apply_through_the_worker(
    client_op: Client, client_ap: Client, domain: Domain, quota: int, witness: str
) -> dict[str, Any]:
    profile = client_op.post(
        "/api/profiles/",
        {"name": f"cap-{quota}", "content": {"sched": {"vcpu_period": 100000, "vcpu_quota": quota}}},
        content_type="application/json",
    )
    assert profile.status_code == 201, profile.content
    created = client_op.post(
        "/api/change-requests/",
        {"profile": profile.json()["id"], "domains": [domain.pk], "scope": "both", "reason": "transport test"},
        content_type="application/json",
    )
    assert created.status_code == 201, created.content
    cr = created.json()
    approved = client_ap.post(
        f"/api/change-requests/{cr['id']}/approve/", {"comment": "ok"}, content_type="application/json"
    )
    assert approved.status_code == 200, approved.content

    def finished() -> dict[str, Any] | None:
        body = client_ap.get(f"/api/change-requests/{cr['id']}/").json()
        return None if body["status"] in ("pending", "scheduled", "applying") else body

    done = wait_for(finished, 120, 0.5, what="the worker applying the change")
    assert isinstance(done, dict) and done["status"] == "applied", done
    for flag in ("--live", "--config"):
        assert f"vcpu_quota     : {quota}" in virsh(witness, "schedinfo", domain.name, flag)
    return done


def _charts(host: Host, domain: Domain) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Tick the collector on ``host`` until it has stored frames for the host and its guest; return them."""
    publisher = push.Publisher()
    try:
        collector = HostCollector(host_id=host.pk, uri=host.uri, publisher=publisher)
        push.mark_watched([(push.GUEST, domain.pk), (push.HOST, host.pk)])

        def both() -> bool:
            collector.tick(1.0)
            return bool(history.recent(push.GUEST, domain.pk)) and bool(history.recent(push.HOST, host.pk))

        wait_for(both, 20, 1.0, what="chart frames over the transport")
    finally:
        publisher.close()
    guest = [json.loads(text) for text in history.recent(push.GUEST, domain.pk)]
    host_frames = [json.loads(text) for text in history.recent(push.HOST, host.pk)]
    return guest, host_frames


@pytest.mark.parametrize(("transport", "quota"), [("tls", 31000), ("ssh", 32000)])
def test_inventory_apply_and_charts_run_over_the_secure_transport(
    transport: str,
    quota: int,
    secure_host: SecureHost,
    celery_worker: subprocess.Popen[bytes],
    admin_user: User,
    operator: User,
    approver: User,
    login: Callable[[User], Client],
) -> None:
    uri = secure_host.tls_uri() if transport == "tls" else secure_host.ssh_uri()
    registered = _register(login(admin_user), f"secure-{transport}", uri)
    assert registered["transport"] == transport
    host = _sync_and_check(registered["id"], secure_host.guest)
    domain = Domain.objects.get(host=host, name=secure_host.guest)

    done = _apply_through_the_worker(login(operator), login(approver), domain, quota, secure_host.witness)
    assert AuditEvent.objects.filter(action="change.applied", change_request_id=done["id"]).count() == 1

    guest_frames, host_frames = _charts(host, domain)
    assert guest_frames[-1]["n"] == [0, 1] and len(guest_frames[-1]["v"]) == 2
    assert host_frames[-1]["b"], host_frames[-1]


def test_qemu_ssh_refuses_a_host_key_the_worker_does_not_know(secure_host: SecureHost) -> None:
    # The same sshd under another name: the known_hosts file holds its key for [127.0.0.1]:port only.
    host = create_host(name="secure-ssh-unknown", uri=secure_host.ssh_uri("localhost"), actor=None)
    result = sync_host(host.pk)
    assert not result.ok and "Host key verification failed" in result.error
    assert not Domain.objects.filter(host=host).exists()


def test_qemu_ssh_refuses_a_host_whose_key_changed(secure_host: SecureHost, tmp_path: Path) -> None:
    impostor = LoopbackSSHD(tmp_path / "impostor", BASE_PORT + 3)
    impostor.start()
    try:
        uri = secure_host.ssh_uri().replace(f":{secure_host.sshd.port}/", f":{impostor.port}/")
        # Tell OpenSSH the genuine key belongs to the impostor's port: the key it is shown differs.
        original = KNOWN_HOSTS.read_text()
        KNOWN_HOSTS.write_text(original + original.replace(f":{secure_host.sshd.port}]", f":{impostor.port}]"))
        host = create_host(name="secure-ssh-impostor", uri=uri, actor=None)
        result = sync_host(host.pk)
    finally:
        KNOWN_HOSTS.write_text(secure_host.sshd.host_key_line())
        impostor.stop()
    assert not result.ok and "Host key verification failed" in result.error
    assert Host.objects.get(pk=host.pk).status == Host.Status.DOWN


def test_tls_refuses_a_server_whose_certificate_another_ca_signed(secure_host: SecureHost, tmp_path: Path) -> None:
    stranger = make_pki(tmp_path / "other-ca")  # its own CA, client certificate and cacert.pem
    host = create_host(name="secure-tls-stranger", uri=secure_host.tls_uri(stranger.client_dir), actor=None)
    result = sync_host(host.pk)
    assert not result.ok and "certificate" in result.error.lower()
    assert not Domain.objects.filter(host=host).exists()


@pytest.mark.parametrize(
    "uri",
    [
        "qemu+tls://kvm01.example.com/system?no_verify=1",
        "qemu+ssh://root@kvm01.example.com/system?no_verify=1",
        "qemu+tls://kvm01.example.com/system?pkipath=/etc/isoweb/pki&no_verify=yes",
    ],
)
def test_parameters_that_turn_verification_off_are_refused_without_an_override(
    uri: str, admin_user: User, login: Callable[[User], Client]
) -> None:
    response = login(admin_user).post("/api/hosts/", {"name": "lax", "uri": uri}, content_type="application/json")
    assert response.status_code == 400
    assert "turns off checking that the host is the one you mean" in response.json()["uri"][0]
    assert not Host.objects.exists() and not AuditEvent.objects.exists()


@pytest.mark.parametrize(
    ("uri", "words"),
    [
        ("qemu+ssh://root@kvm01.example.com/system?known_hosts=/etc/isoweb/known_hosts", "not used by qemu+ssh"),
        ("qemu+ssh://root@kvm01.example.com/system?known_hosts_verify=ignore", "not used by qemu+ssh"),
        ("qemu+libssh://root@kvm01.example.com/system?known_hosts_verify=ignore", "qemu+libssh is not supported"),
    ],
)
def test_libssh_and_its_parameters_are_refused_with_the_reason(
    uri: str, words: str, admin_user: User, login: Callable[[User], Client]
) -> None:
    response = login(admin_user).post("/api/hosts/", {"name": "kh", "uri": uri}, content_type="application/json")
    assert response.status_code == 400 and words in response.json()["uri"][0]
    assert not Host.objects.exists()


def test_an_admin_override_needs_a_reason_and_is_audited_and_flagged_on_the_host_pages(
    admin_user: User, viewer: User, login: Callable[[User], Client], redis_server: str
) -> None:
    admin = login(admin_user)
    uri = "qemu+tls://127.0.0.1:1/system?no_verify=1"
    no_reason = admin.post(
        "/api/hosts/", {"name": "lab", "uri": uri, "allow_unverified": True}, content_type="application/json"
    )
    assert no_reason.status_code == 400 and "unverified_reason" in no_reason.json()
    assert not Host.objects.exists()

    body = _register(admin, "lab", uri, allow_unverified=True, unverified_reason="lab box, self-signed cert")
    assert body["allow_unverified"] is True and body["unverified_reason"] == "lab box, self-signed cert"
    event = AuditEvent.objects.get(host_id=body["id"], action=AuditEvent.Action.HOST_CREATE)
    after = event.after or {}
    assert after["allow_unverified"] is True and after["unverified_reason"] == "lab box, self-signed cert"

    verified = create_host(name="checked", uri="qemu+tls://127.0.0.1:2/system", actor=None)
    page = login(viewer).get("/").content.decode()
    assert page.count('data-flag="unverified"') == 1
    detail = login(viewer).get(f"/hosts/{body['id']}/").content.decode()
    assert 'data-flag="unverified"' in detail and "lab box, self-signed cert" in detail
    assert 'data-flag="unverified"' not in login(viewer).get(f"/hosts/{verified.pk}/").content.decode()


def test_the_add_host_form_takes_the_override_with_its_reason(
    admin_user: User, login: Callable[[User], Client], redis_server: str
) -> None:
    admin = login(admin_user)
    uri = "qemu+ssh://root@127.0.0.1:1/system?no_verify=1"
    refused = admin.post("/hosts/add/", {"name": "lab", "uri": uri})
    assert refused.status_code == 200 and "turns off checking" in refused.content.decode()
    assert not Host.objects.exists()
    admin.post("/hosts/add/", {"name": "lab", "uri": uri, "allow_unverified": "on", "unverified_reason": "lab"})
    host = Host.objects.get(name="lab")
    assert host.allow_unverified and host.unverified_reason == "lab"
