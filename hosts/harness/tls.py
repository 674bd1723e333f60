"""Make the certificates a TLS libvirt host and its clients need: a CA, a server and a client certificate.

The test fleet proves ``qemu+tls`` with these (see ``FleetHost`` with ``Fleet.tls``): libvirtd checks the
client's certificate against the CA (and its DN against ``tls_allowed_dn_list``), the client checks the
server's certificate against the same CA and the host name of the URI. The files are laid out the way
libvirt reads them: the daemon's three paths go into ``libvirtd.conf`` (``ca_file``, ``cert_file``,
``key_file``) and the client's directory is the ``pkipath=`` of the URI (``cacert.pem``, ``clientcert.pem``,
``clientkey.pem``). Made with the ``openssl`` command line; private keys are written 0600. Harness code only.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

CLIENT_CN = "isoweb-worker"
DAYS = "30"


class PKIError(RuntimeError):
    """openssl refused to make a key or certificate."""


@dataclass(frozen=True)
class ServerFiles:
    """What libvirtd's ``ca_file``, ``cert_file`` and ``key_file`` point at."""

    ca_file: Path
    cert_file: Path
    key_file: Path


@dataclass(frozen=True)
class PKI:
    """A test CA with one server and one client certificate, in libvirt's layout."""

    directory: Path

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca" / "cakey.pem"

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca" / "cacert.pem"

    @property
    def server(self) -> ServerFiles:
        base = self.directory / "server"
        return ServerFiles(self.ca_cert, base / "servercert.pem", base / "serverkey.pem")

    @property
    def client_dir(self) -> Path:
        """The ``pkipath=`` directory of a client: ``cacert.pem``, ``clientcert.pem``, ``clientkey.pem``."""
        return self.directory / "client"

    @property
    def client_dn(self) -> str:
        return f"CN={CLIENT_CN}"


def _openssl(*args: str) -> None:
    # Arguments are fixed options and paths under the harness's own directory, never user input.
    result = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise PKIError(f"openssl {args[0]} failed: {result.stderr.strip()}")


def _key(path: Path) -> None:
    """Write a new RSA key to ``path``, readable by its owner only from the start."""
    path.parent.mkdir(parents=True, exist_ok=True)
    old = os.umask(0o077)
    try:
        _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(path))
    finally:
        os.umask(old)


def _signed(ca: PKI, key: Path, cert: Path, subject: str, extensions: list[str]) -> None:
    added = [arg for ext in extensions for arg in ("-addext", ext)]
    _openssl(
        *("req", "-new", "-x509", "-key", str(key), "-out", str(cert), "-subj", subject, "-days", DAYS),
        *("-CA", str(ca.ca_cert), "-CAkey", str(ca.ca_key), *added),
    )


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def make_pki(directory: Path, server_names: tuple[str, ...] = ("127.0.0.1", "localhost")) -> PKI:
    """Create (or keep, if already made) a CA, a server certificate for ``server_names`` and a client one.

    The server certificate carries every name as a subjectAltName (IP addresses as ``IP:``), which is what
    the client compares with the URI's host; the client certificate's DN is ``CN=isoweb-worker``.
    """
    pki = PKI(directory)
    if pki.ca_cert.exists() and pki.server.cert_file.exists() and (pki.client_dir / "clientcert.pem").exists():
        return pki
    _key(pki.ca_key)
    _openssl(
        *("req", "-new", "-x509", "-key", str(pki.ca_key), "-out", str(pki.ca_cert), "-days", DAYS),
        *("-subj", "/CN=isoweb test CA", "-addext", "basicConstraints=critical,CA:TRUE"),
        *("-addext", "keyUsage=critical,keyCertSign,cRLSign"),
    )
    alt = ",".join(f"IP:{name}" if _is_address(name) else f"DNS:{name}" for name in server_names)
    server = pki.server
    _key(server.key_file)
    _signed(
        pki,
        server.key_file,
        server.cert_file,
        f"/CN={server_names[0]}",
        [
            "basicConstraints=critical,CA:FALSE",
            "keyUsage=critical,digitalSignature,keyEncipherment",
            "extendedKeyUsage=serverAuth",
            f"subjectAltName={alt}",
        ],
    )
    client = pki.client_dir
    _key(client / "clientkey.pem")
    _signed(
        pki,
        client / "clientkey.pem",
        client / "clientcert.pem",
        f"/CN={CLIENT_CN}",
        [
            "basicConstraints=critical,CA:FALSE",
            "keyUsage=critical,digitalSignature,keyEncipherment",
            "extendedKeyUsage=clientAuth",
        ],
    )
    (client / "cacert.pem").write_bytes(pki.ca_cert.read_bytes())
    return pki


def libvirtd_tls_config(pki: PKI, port: int) -> str:
    """The ``libvirtd.conf`` lines that make a daemon listen for TLS on ``port`` and accept only this PKI's client."""
    server = pki.server
    return (
        "listen_tls = 1\n"
        f'tls_port = "{port}"\n'
        'auth_tls = "none"\n'
        f'ca_file = "{server.ca_file}"\n'
        f'cert_file = "{server.cert_file}"\n'
        f'key_file = "{server.key_file}"\n'
        f'tls_allowed_dn_list = ["{pki.client_dn}"]\n'
    )
