#!/bin/bash
# Fetch bullseye's libvirt 7.0 ("old libvirt": its query-migrate parser fails
# "migration was active, but no RAM info was set" on LP#1994002's reply) from
# the archive the system's apt already uses, without touching the system's
# apt setup, and unpack it for use in place:
#
#   bash samples/fetch-libvirt.sh
#
#   libvirt0, libvirt-clients (virsh), libvirt-daemon (libvirtd, virtlogd),
#   libvirt-daemon-driver-qemu 7.0.0-3+deb11u3 and libyajl2 (bookworm has
#   no libyajl.so.2); run with LD_LIBRARY_PATH=ROOT/usr/lib/x86_64-linux-gnu
#   and LIBVIRT_DRIVER_DIR=ROOT/usr/lib/x86_64-linux-gnu/libvirt/connection-driver.
#
# The interface and nwfilter drivers are removed after unpacking: they need
# libnetcf and libpcap, which bookworm does not have installed, and the qemu
# driver runs without them (libvirtd skips a driver module that is absent).
#
# Parts: the cache check under the lock, the private apt download, the
# unpack, a --version check, the stamp. Cached in
# ${MIGRACE_QEMU_CACHE:-samples/.cache}/libvirt-7.0/root; running it again
# answers at once. Last stdout line: the root's path; progress on stderr.
# Exit 0 when libvirtd and virsh are in place, 3 when the registry does not
# serve them (with the reason), 1 on any other failure.
set -eu

SCRIPT=fetch-libvirt
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=samples/debian-lib.sh
. "$HERE/debian-lib.sh"

SUITE=bullseye
VERSION='7.0.0-3+deb11u3'
PKGS="libvirt0=$VERSION libvirt-clients=$VERSION libvirt-daemon=$VERSION libvirt-daemon-driver-qemu=$VERSION libyajl2"

cache_entry libvirt-7.0
ROOT="$DEST/root"
LIBS="$ROOT/usr/lib/x86_64-linux-gnu"

done_already() { entry_complete "$ROOT/usr/sbin/libvirtd" "$ROOT/usr/bin/virsh"; }

answer_cached "$DEST" "$ROOT"
# shellcheck disable=SC2086
fetch_unpacked "$DEST" "$SUITE" libvirt-daemon "$VERSION" "$ROOT" $PKGS
rm -f "$LIBS/libvirt/connection-driver/libvirt_driver_interface.so" "$LIBS/libvirt/connection-driver/libvirt_driver_nwfilter.so"

for bin in usr/sbin/libvirtd usr/bin/virsh; do
  [ -x "$ROOT/$bin" ] || fail "unpacked, but $ROOT/$bin is missing"
  if ! LD_LIBRARY_PATH="$LIBS" "$ROOT/$bin" --version >"$APT/version.txt" 2>&1; then
    sed 's/^/  /' "$APT/version.txt" >&2
    fail "the unpacked $bin does not run"
  fi
  say "$bin: $(head -n 1 "$APT/version.txt")"
done
missing=$(LD_LIBRARY_PATH="$LIBS" ldd "$LIBS/libvirt/connection-driver/libvirt_driver_qemu.so" | awk '/not found/ { print $1 }' | tr '\n' ' ')
[ -z "$missing" ] || fail "the qemu driver needs libraries bookworm lacks: $missing"

# The package lists and .debs are not needed once unpacked.
rm -rf "$APT" "$DEBS"
: > "$STAMP"
printf '%s\n' "$ROOT"
