#!/usr/bin/env bash
# Install the Debian packages isoweb needs (as root), or say exactly what to run (otherwise).
# Idempotent: does nothing when everything is present.
set -euo pipefail

PACKAGES=(
  libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86  # libvirt hosts + KVM guests
  libvirt-dev pkg-config                                                     # to build libvirt-python
  redis-server                                                               # Celery broker, Channels layer
  chromium                                                                   # browser tests
  postgresql                                                                 # the tests' second database
  openssh-server openssh-client netcat-openbsd openssl                       # tests of qemu+ssh (nc -U) and qemu+tls
  slapd ldap-utils libldap2-dev libsasl2-dev                                 # LDAP login tests (slapd); python-ldap builds against the -dev two
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
for tool in python3 npm; do
  command -v "$tool" >/dev/null || { echo "isoweb needs $tool on PATH (Python >= 3.11 with venv, Node.js >= 18 with npm)." >&2; exit 1; }
done

need_user=0
getent passwd libvirt-qemu >/dev/null && getent group libvirt-qemu >/dev/null || need_user=1

if [ ${#missing[@]} -eq 0 ] && [ $need_user -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "isoweb needs system packages and must run libvirtd as root. Run this as root, then try again:" >&2
  [ ${#missing[@]} -gt 0 ] && echo "  apt-get update && apt-get install -y ${missing[*]}" >&2
  [ $need_user -eq 1 ] && echo "  groupadd --system libvirt-qemu; useradd --system --no-create-home --gid libvirt-qemu --shell /usr/sbin/nologin libvirt-qemu" >&2
  exit 1
fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "Installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # The packages' own services (postgresql, ssh, slapd, redis) are not wanted: isoweb and its tests start
  # private instances on their own ports. A policy-rc.d that refuses every start keeps the installs from
  # leaving system daemons running (unless the machine already has its own policy).
  own_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && own_policy=1
  fi
  trap '[ $own_policy -eq 1 ] && rm -f /usr/sbin/policy-rc.d' EXIT
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# libvirtd resolves its compiled-in default QEMU user and group before reading qemu.conf, so they
# must exist even though the fleet's qemu.conf runs guests as root (the libvirt-daemon-system package,
# which would create them, also installs services we do not want started).
getent group libvirt-qemu >/dev/null || groupadd --system libvirt-qemu
getent passwd libvirt-qemu >/dev/null || useradd --system --no-create-home --gid libvirt-qemu \
  --home-dir /var/lib/libvirt --shell /usr/sbin/nologin libvirt-qemu
exit 0
