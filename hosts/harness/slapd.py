"""A private OpenLDAP directory for the LDAP login tests: Debian's slapd on its own loopback port.

Its whole configuration (cn=config: the mdb backend, the core/cosine/inetOrgPerson schemas, access rules
that let a password be used only to bind) and its entries are loaded with ``slapadd`` into a directory of
its own, so the machine's /etc/ldap and any system slapd are never touched; it runs in the foreground of a
session of its own and is stopped by pid. Harness code only, not the product.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from hosts.harness.processes import port_open

SCHEMAS = ("core", "cosine", "inetorgperson")
MODULE_PATH = "/usr/lib/ldap"
START_TIMEOUT = 15.0
COMMAND_TIMEOUT = 30.0


@dataclass(frozen=True)
class Person:
    """A directory user: uid, password and the groups (cn) they belong to."""

    uid: str
    password: str
    given_name: str = "Test"
    surname: str = "User"
    groups: tuple[str, ...] = ()


@dataclass
class Directory:
    """A running slapd: its URI, suffix, the rootdn that may change entries, and the process to stop."""

    uri: str
    suffix: str
    root_dn: str
    root_password: str
    workdir: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def people_dn(self) -> str:
        return f"ou=people,{self.suffix}"

    def groups_dn(self) -> str:
        return f"ou=groups,{self.suffix}"

    def user_dn(self, uid: str) -> str:
        return f"uid={uid},{self.people_dn()}"

    def group_dn(self, cn: str) -> str:
        return f"cn={cn},{self.groups_dn()}"

    def modify(self, ldif: str) -> None:
        """Apply an LDIF change as the rootdn with ldapmodify (the directory's own client)."""
        subprocess.run(
            ["ldapmodify", "-x", "-H", self.uri, "-D", self.root_dn, "-w", self.root_password],
            input=ldif.encode(),
            check=True,
            capture_output=True,
            timeout=COMMAND_TIMEOUT,
        )

    def remove_member(self, group: str, uid: str) -> None:
        self.modify(f"dn: {self.group_dn(group)}\nchangetype: modify\ndelete: member\nmember: {self.user_dn(uid)}\n")

    def add_member(self, group: str, uid: str) -> None:
        self.modify(f"dn: {self.group_dn(group)}\nchangetype: modify\nadd: member\nmember: {self.user_dn(uid)}\n")

    def stop(self) -> None:
        """Stop slapd by pid (its own session): SIGTERM, then SIGKILL if it does not go within 10 s."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


def _hash(password: str) -> str:
    result = subprocess.run(
        ["slappasswd", "-s", password], check=True, capture_output=True, text=True, timeout=COMMAND_TIMEOUT
    )
    return result.stdout.strip()


def _config_ldif(workdir: Path, suffix: str, root_dn: str, root_password: str) -> str:
    schemas = "\n".join(f"include: file:///etc/ldap/schema/{name}.ldif" for name in SCHEMAS)
    # A password may be used to bind and changed by its owner; nobody reads it. Everything else is readable
    # by anyone who bound (isoweb's service account searches users and groups).
    access = (
        "olcAccess: {0}to attrs=userPassword by self write by anonymous auth by * none\n"
        "olcAccess: {1}to * by users read by * none"
    )
    return f"""dn: cn=config
objectClass: olcGlobal
cn: config
olcPidFile: {workdir}/slapd.pid

dn: cn=module{{0}},cn=config
objectClass: olcModuleList
cn: module{{0}}
olcModulePath: {MODULE_PATH}
olcModuleLoad: back_mdb

dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

{schemas}

dn: olcDatabase={{-1}}frontend,cn=config
objectClass: olcDatabaseConfig
objectClass: olcFrontendConfig
olcDatabase: {{-1}}frontend

dn: olcDatabase={{0}}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {{0}}config
olcAccess: {{0}}to * by * none

dn: olcDatabase={{1}}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {{1}}mdb
olcSuffix: {suffix}
olcDbDirectory: {workdir}/data
olcDbMaxSize: 16777216
olcRootDN: {root_dn}
olcRootPW: {_hash(root_password)}
{access}
"""


def _entries_ldif(suffix: str, root_dn: str, service: Person, people: list[Person], groups: list[str]) -> str:
    top = suffix.split(",")[0].split("=", 1)[1]
    entries = [
        f"dn: {suffix}\nobjectClass: dcObject\nobjectClass: organization\ndc: {top}\no: isoweb tests",
        f"dn: ou=people,{suffix}\nobjectClass: organizationalUnit\nou: people",
        f"dn: ou=groups,{suffix}\nobjectClass: organizationalUnit\nou: groups",
    ]
    for person in [service, *people]:
        entries.append(
            f"dn: uid={person.uid},ou=people,{suffix}\nobjectClass: inetOrgPerson\nuid: {person.uid}\n"
            f"cn: {person.given_name} {person.surname}\ngivenName: {person.given_name}\nsn: {person.surname}\n"
            f"mail: {person.uid}@isoweb.test\nuserPassword: {_hash(person.password)}"
        )
    for cn in groups:
        # groupOfNames needs a member: the rootdn stays in every group so any person can be removed.
        members = [root_dn] + [f"uid={p.uid},ou=people,{suffix}" for p in people if cn in p.groups]
        entries.append(
            f"dn: cn={cn},ou=groups,{suffix}\nobjectClass: groupOfNames\ncn: {cn}\n"
            + "\n".join(f"member: {member}" for member in members)
        )
    return "\n\n".join(entries) + "\n"


def start_directory(
    workdir: Path,
    port: int,
    *,
    people: list[Person],
    groups: list[str],
    service: Person,
    suffix: str = "dc=isoweb,dc=test",
    root_password: str = "root-secret",  # noqa: S107 - a throwaway directory on loopback
) -> Directory:
    """Load a fresh directory into ``workdir`` and start slapd on ``ldap://127.0.0.1:port``."""
    if port_open(port):
        raise RuntimeError(f"port {port} is already in use; slapd would not own it")
    root_dn = f"cn=admin,{suffix}"
    config_dir, data_dir = workdir / "slapd.d", workdir / "data"
    config_dir.mkdir(parents=True)
    data_dir.mkdir(parents=True)
    (workdir / "config.ldif").write_text(_config_ldif(workdir, suffix, root_dn, root_password))
    (workdir / "entries.ldif").write_text(_entries_ldif(suffix, root_dn, service, people, groups))
    for args in (["-n", "0", "-l", str(workdir / "config.ldif")], ["-b", suffix, "-l", str(workdir / "entries.ldif")]):
        subprocess.run(
            ["slapadd", "-F", str(config_dir), *args], check=True, capture_output=True, timeout=COMMAND_TIMEOUT
        )
    uri = f"ldap://127.0.0.1:{port}"
    log = open(workdir / "slapd.log", "wb")  # noqa: SIM115 - open for the process's life
    # -d 0: stay in the foreground (slapd does not fork while debugging), so the pid is ours to stop.
    proc = subprocess.Popen(
        ["slapd", "-F", str(config_dir), "-h", f"{uri}/", "-d", "0"],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    directory = Directory(uri, suffix, root_dn, root_password, workdir, proc)
    deadline = time.monotonic() + START_TIMEOUT
    while not port_open(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            directory.stop()
            raise RuntimeError(f"slapd did not start on {uri}: {(workdir / 'slapd.log').read_text()[-2000:]}")
        time.sleep(0.1)
    return directory
