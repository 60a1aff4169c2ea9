#!/bin/bash
# Fetch a Debian QEMU build from the archive the system's apt already uses,
# without touching the system's apt setup, and unpack it for use in place.
#
#   bash samples/fetch-qemu.sh BUILD      BUILD: 5.2 | 10.0.2 (or its suite name)
#
#   5.2     bullseye           qemu-system-x86 1:5.2+dfsg-11+deb11u3 and the
#                              libraries bookworm lacks (unpatched for LP#1994002);
#                              run it with LD_LIBRARY_PATH=ROOT/usr/lib/x86_64-linux-gnu
#   10.0.2  bookworm-backports qemu-system-x86, -common and -data
#                              1:10.0.2+ds-2+deb13u1~bpo12+1; runs on bookworm as is
#
# Parts: the table of builds (build_recipe), the cache check under the lock,
# the private apt download, the unpack, a -version check, the stamp.
#
# Cached in ${MIGRACE_QEMU_CACHE:-samples/.cache}/qemu-VERSION/root; running
# it again answers at once. The stamp is written last, so a half-finished run
# is redone. Last stdout line: the binary's path; progress on stderr.
# Exit 0 when the binary is in place, 2 on a bad argument, 3 when the
# registry does not serve the build (with the reason), 1 on any other failure.
set -eu

SCRIPT=fetch-qemu
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=samples/debian-lib.sh
. "$HERE/debian-lib.sh"

# build_recipe BUILD: sets NAME, SUITE, VERSION (of qemu-system-x86) and
# PKGS (what apt-get download gets; PKG=VERSION pins one).
build_recipe() {
  case "$1" in
    5.2|5.2.0|bullseye)
      NAME=qemu-5.2 SUITE=bullseye VERSION='1:5.2+dfsg-11+deb11u3'
      # The Xen, virglrenderer, uring and yajl libraries of bullseye: bookworm
      # has other sonames. Firmware comes from the installed bookworm packages.
      PKGS="qemu-system-x86=$VERSION libxencall1 libxenstore3.0 libxenforeignmemory1 libxengnttab1
            libxenevtchn1 libxendevicemodel1 libxentoolcore1 libxenmisc4.14 libxentoollog1
            libvirglrenderer1 liburing1 libyajl2" ;;
    10.0.2|10.0|bookworm-backports)
      NAME=qemu-10.0.2 SUITE=bookworm-backports VERSION='1:10.0.2+ds-2+deb13u1~bpo12+1'
      PKGS="qemu-system-x86=$VERSION qemu-system-common=$VERSION qemu-system-data=$VERSION" ;;
    *)
      say "unknown build '$1'; known: 5.2 (bullseye), 10.0.2 (bookworm-backports)"
      exit 2 ;;
  esac
}

[ $# -eq 1 ] || { say "usage: fetch-qemu.sh BUILD (5.2 | 10.0.2)"; exit 2; }
build_recipe "$1"

cache_entry "$NAME"
ROOT="$DEST/root"
BIN="$ROOT/usr/bin/qemu-system-x86_64"

done_already() { entry_complete "$BIN"; }

answer_cached "$DEST" "$BIN"
# shellcheck disable=SC2086
fetch_unpacked "$DEST" "$SUITE" qemu-system-x86 "$VERSION" "$ROOT" $PKGS
[ -x "$BIN" ] || fail "unpacked, but $BIN is missing"

if ! LD_LIBRARY_PATH="$ROOT/usr/lib/x86_64-linux-gnu" "$BIN" -version >"$APT/version.txt" 2>&1; then
  sed 's/^/  /' "$APT/version.txt" >&2
  fail "the unpacked binary does not run"
fi
say "$(head -n 1 "$APT/version.txt")"

# The package lists and .debs are not needed once unpacked.
rm -rf "$APT" "$DEBS"
: > "$STAMP"
printf '%s\n' "$BIN"
