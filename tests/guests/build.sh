#!/usr/bin/env bash
# Builds a Debian root filesystem that boots its own systemd under systemd-nspawn, for the tests that
# need a real init system (units, Quadlets, reboots, power cuts, lingering users). Once per CI run:
# the finished tree is marked with .complete and reused.
#
#   tests/guests/build.sh SUITE OUT_DIR        (SUITE: bookworm gives Podman 4.3, trixie Podman 5)
set -euo pipefail
suite=${1:?usage: build.sh SUITE OUT_DIR} out=${2:?usage: build.sh SUITE OUT_DIR}
# A tree built by another version of this script is rebuilt: .complete holds the script's checksum.
stamp=$(sha256sum "$0" | cut -c1-16)
[ "$(cat "$out/.complete" 2>/dev/null)" = "$stamp" ] && exit 0
rm -rf "$out"
command -v debootstrap >/dev/null || { echo "build.sh: debootstrap is missing: make deps" >&2; exit 2; }
rm -rf "$out.tmp"
mkdir -p "$(dirname "$out")"

packages=systemd,systemd-sysv,dbus,podman,runc,netavark,aardvark-dns,iptables,iproute2,ca-certificates,curl,catatonit,skopeo,uidmap,slirp4netns
# man-db: the package test reads registry-up's man page as a user would (man -w).
packages=$packages,man-db
if [ "$suite" != bookworm ]; then
  # trixie: kmod (else systemd-modules-load fails), nftables (netavark calls nft), and what user@.service
  # and rootless networking need.
  packages=$packages,kmod,nftables,libpam-systemd,dbus-user-session,passt
  # firewalld, as on Fedora/RHEL-family hosts (disabled below; the firewall test starts it).
  packages=$packages,firewalld
fi
debootstrap --variant=minbase --include="$packages" "$suite" "$out.tmp" http://deb.debian.org/debian >"$out.log" 2>&1 ||
  { tail -20 "$out.log" >&2; exit 1; }

# Podman settings this cgroup layout needs (no pids controller; bookworm's crun and ulimits as on the host).
mkdir -p "$out.tmp/etc/containers"
cat >"$out.tmp/etc/containers/containers.conf" <<'CONF'
[containers]
default_ulimits = []
pids_limit = 0

[engine]
runtime = "runc"
CONF
# udev does not run in the guest: make /dev/net/tun usable for rootless networking as it would.
echo 'z /dev/net/tun 0666 - - -' >"$out.tmp/etc/tmpfiles.d/registry-up-tun.conf"
# The test domain, resolved inside the guest only.
echo '127.0.0.1 registry.test' >>"$out.tmp/etc/hosts"
echo "registry-up-$suite" >"$out.tmp/etc/hostname"
# Nothing needs a console login.
ln -sf /dev/null "$out.tmp/etc/systemd/system/console-getty.service"
ln -sf /dev/null "$out.tmp/etc/systemd/system/getty@.service"
# firewalld stays off unless a test turns it on: the other tests run without a host firewall.
if [ -e "$out.tmp/usr/lib/systemd/system/firewalld.service" ]; then
  systemctl --root="$out.tmp" disable firewalld.service >/dev/null 2>&1
fi
rm -rf "$out.tmp/var/cache/apt/archives/"*.deb
echo "$stamp" >"$out.tmp/.complete"
mv "$out.tmp" "$out"
