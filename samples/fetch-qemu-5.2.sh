#!/bin/sh
# Fetch the unpatched Debian bullseye qemu-system-x86 (1:5.2+dfsg-11+deb11u3)
# and the libraries bookworm lacks, without touching the system's apt setup.
# Recipe: /work/shared/facts.md, "Binaries a test can use".
#
# Last stdout line: the binary's path. Progress on stderr.
# Run it with LD_LIBRARY_PATH=<dir>/root/usr/lib/x86_64-linux-gnu.
# Exit 0 when the binary is in place, 3 when the registry does not serve it,
# 1 on any other failure. MIGRACE_QEMU52_DIR overrides the destination.
set -eu

WANT_VERSION='1:5.2+dfsg-11+deb11u3'
HERE=$(cd "$(dirname "$0")" && pwd)
DEST=${MIGRACE_QEMU52_DIR:-"$HERE/.cache/qemu-5.2"}
ROOT="$DEST/root"
BIN="$ROOT/usr/bin/qemu-system-x86_64"
STAMP="$DEST/.complete"

say() { printf 'fetch-qemu-5.2: %s\n' "$*" >&2; }
unserved() { say "$*"; exit 3; }

# The stamp is written last, so a half-finished earlier run is redone.
if [ -f "$STAMP" ] && [ -x "$BIN" ]; then
  printf '%s\n' "$BIN"
  exit 0
fi

# Test workers may call this at the same time: one fetches, the others wait for it.
mkdir -p "$DEST"
if command -v flock >/dev/null 2>&1; then
  exec 9>"$DEST/.lock"
  flock 9
  if [ -f "$STAMP" ] && [ -x "$BIN" ]; then
    printf '%s\n' "$BIN"
    exit 0
  fi
fi

for tool in apt-get dpkg-deb; do
  command -v "$tool" >/dev/null 2>&1 || { say "needs $tool (Debian's apt), which is not installed"; exit 1; }
done

KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
[ -r "$KEYRING" ] || unserved "no Debian archive keyring at $KEYRING, cannot verify bullseye"

# The registry is the one the system's own apt uses; none is written here.
uri=''
if [ -r /etc/apt/sources.list.d/debian.sources ]; then
  # deb822: the URIs of the first stanza whose suites are not -security/-updates only.
  uri=$(awk '
    BEGIN { RS = ""; FS = "\n" }
    {
      u = ""; s = ""; t = ""
      for (i = 1; i <= NF; i++) {
        if ($i ~ /^URIs:/)   { u = $i; sub(/^URIs:[ \t]*/, "", u) }
        if ($i ~ /^Suites:/) { s = $i }
        if ($i ~ /^Types:/)  { t = $i }
      }
      if (u != "" && t ~ /(^|[ \t])deb([ \t]|$)/ && s !~ /security/) { split(u, a, /[ \t]+/); print a[1]; exit }
    }' /etc/apt/sources.list.d/debian.sources)
fi
if [ -z "$uri" ] && [ -r /etc/apt/sources.list ]; then
  uri=$(awk '
    $1 == "deb" && $0 !~ /security/ {
      i = 2
      if ($i ~ /^\[/) { while ($i !~ /\]$/ && i < NF) i++; i++ }
      print $i; exit
    }' /etc/apt/sources.list)
fi
[ -n "$uri" ] || unserved "found no Debian archive URI in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list"
say "using the system's Debian archive: $uri"

APT="$DEST/apt"
DEBS="$DEST/debs"
rm -rf "$APT" "$DEBS" "$ROOT"
mkdir -p "$APT/lists/partial" "$APT/cache/archives/partial" "$DEBS" "$ROOT"
# Empty on purpose: with the real status apt would pick the installed 7.2.
: > "$APT/status"
printf 'deb [signed-by=%s] %s bullseye main\n' "$KEYRING" "$uri" > "$APT/sources.list"

apt_private() {
  tool=$1
  shift
  "$tool" -q \
    -o Dir::Etc::SourceList="$APT/sources.list" \
    -o Dir::Etc::SourceParts=/dev/null \
    -o Dir::State::Lists="$APT/lists" \
    -o Dir::Cache="$APT/cache" \
    -o Dir::State::status="$APT/status" \
    "$@"
}

say "apt-get update (bullseye, private lists)"
if ! apt_private apt-get update >"$APT/update.log" 2>&1; then
  sed 's/^/  /' "$APT/update.log" >&2
  unserved "the registry at $uri did not serve bullseye (apt-get update failed)"
fi

candidate=$(apt_private apt-cache policy qemu-system-x86 2>/dev/null | awk '/Candidate:/ { print $2 }')
if [ -z "$candidate" ] || [ "$candidate" = '(none)' ]; then
  unserved "bullseye at $uri has no qemu-system-x86"
fi
if [ "$candidate" != "$WANT_VERSION" ]; then
  unserved "bullseye at $uri serves qemu-system-x86 $candidate, not $WANT_VERSION"
fi

PKGS='qemu-system-x86 libxencall1 libxenstore3.0 libxenforeignmemory1 libxengnttab1
libxenevtchn1 libxendevicemodel1 libxentoolcore1 libxenmisc4.14 libxentoollog1
libvirglrenderer1 liburing1 libyajl2'

say "apt-get download (13 packages)"
# shellcheck disable=SC2086
if ! (cd "$DEBS" && apt_private apt-get download $PKGS) >"$APT/download.log" 2>&1; then
  sed 's/^/  /' "$APT/download.log" >&2
  unserved "the registry at $uri did not serve every bullseye package needed"
fi

for deb in "$DEBS"/*.deb; do
  say "unpacking $(basename "$deb")"
  dpkg-deb -x "$deb" "$ROOT"
done

[ -x "$BIN" ] || { say "unpacked, but $BIN is missing"; exit 1; }

if ! LD_LIBRARY_PATH="$ROOT/usr/lib/x86_64-linux-gnu" "$BIN" -version >"$APT/version.txt" 2>&1; then
  sed 's/^/  /' "$APT/version.txt" >&2
  say "the unpacked binary does not run"
  exit 1
fi
say "$(head -n 1 "$APT/version.txt")"

# The package lists and .debs are not needed once unpacked.
rm -rf "$APT/lists" "$APT/cache" "$DEBS"
: > "$STAMP"
printf '%s\n' "$BIN"
