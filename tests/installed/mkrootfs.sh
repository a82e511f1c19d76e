#!/usr/bin/env bash
# Build the pristine root filesystem of the installed-tier container: a fresh Debian 12
# ("bookworm") like a newly flashed Pi, plus what this site's network needs. Run as root by
# tests/installed/rig.py, which caches the result as a tarball keyed by a hash of this script
# and of its inputs (a changed recipe rebuilds).
#
#   mkrootfs.sh ROOT MIRROR INCLUDE PREFETCH CA_DIR SOURCES...
#
# ROOT      empty directory to fill
# MIRROR    Debian mirror for debootstrap (the one the host's apt sources name)
# INCLUDE   comma-separated packages installed on top of Debian's defaults
# PREFETCH  space-separated packages only *downloaded* into apt's cache, not installed, so the
#           README's commands later install them without waiting for the network
# CA_DIR    directory of extra CA certificates (*.crt) this site's TLS proxy needs, or ""
# SOURCES   the host's apt source files to use inside (deb.debian.org over http here)
set -euo pipefail

root=${1:?ROOT} mirror=${2:?MIRROR} include=${3:?INCLUDE} prefetch=${4?PREFETCH}
ca_dir=${5?CA_DIR}
shift 5

# A non-booted container runs commands in the new root with /proc, /dev and DNS set up,
# and leaves no mount behind when it exits (unlike chroot plus bind mounts).
in_root() {
    systemd-nspawn -q -D "$root" --register=no --keep-unit --resolv-conf=copy-host \
        --setenv=DEBIAN_FRONTEND=noninteractive -- "$@"
}

debootstrap --include="$include" bookworm "$root" "$mirror" >"$root.debootstrap.log" 2>&1 || {
    tail -n 30 "$root.debootstrap.log" >&2
    exit 1
}
rm -f "$root.debootstrap.log"

# --- This site's network. A real Pi does not need any of this block: there the registries
# are reached directly, without a TLS-intercepting proxy and its private CA. ---
if [[ -n $ca_dir ]] && compgen -G "$ca_dir/*.crt" >/dev/null; then
    install -m 0644 "$ca_dir"/*.crt "$root/usr/local/share/ca-certificates/"
    in_root update-ca-certificates >/dev/null
    # pip uses its own CA bundle (certifi) unless told to use the system's.
    printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$root/etc/pip.conf"
fi
if (($#)); then
    # The same Debian sources as the host (debootstrap only wrote the main suite).
    : >"$root/etc/apt/sources.list"
    install -m 0644 "$@" "$root/etc/apt/sources.list.d/"
fi
# --- end of the site's network ---

# A Pi's name (debootstrap copies the build host's), resolvable so that sudo does not warn.
echo raspberrypi >"$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\traspberrypi\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' \
    >"$root/etc/hosts"

# A user like a Pi's: `pi`, passwordless sudo (Raspberry Pi OS's 010_pi-nopasswd).
in_root useradd --create-home --shell /bin/bash --groups sudo,audio,video,plugdev,users pi
printf 'pi ALL=(ALL) NOPASSWD: ALL\n' >"$root/etc/sudoers.d/010_pi-nopasswd"
chmod 0440 "$root/etc/sudoers.d/010_pi-nopasswd"

# Fill apt's package cache (downloads only: nothing is installed).
in_root apt-get update -qq
if [[ -n $prefetch ]]; then
    # shellcheck disable=SC2086  # a list of package names
    in_root apt-get install -qq -y --download-only --no-install-recommends $prefetch >/dev/null
fi
