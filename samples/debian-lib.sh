# Shared by the scripts that take QEMU from Debian's archive
# (fetch-qemu.sh, build-qemu-dbg.sh, sid-chroot.sh); sourced, not run.
#
# Parts:
#   say / unserved       progress on stderr; exit 3 = "the registry does not serve it"
#   debian_uri           the archive URI the system's own apt uses, read at run time
#                        (no registry host is ever written into the project)
#   fail                 exit 1 with a reason
#   private_apt_init     a private apt state (lists, cache, empty status, one
#                        sources.list) so the system's apt setup is never touched
#   apt_private          apt-get / apt-cache with that private state
#   cache_entry          DEST and STAMP of a cache entry (MIGRACE_QEMU_CACHE or samples/.cache)
#   entry_complete       the entry's stamp is there and its programs are in place
#   cache_lock           one flock per cache entry: parallel callers wait, then
#                        find the finished entry
#   answer_cached        print the finished entry and exit, or take its lock
#   fetch_unpacked       a suite's pinned packages downloaded with the private
#                        apt and unpacked into one root (fetch-qemu.sh, fetch-libvirt.sh)
#   need_tools           a clear exit 1 naming a missing tool
#
# Callers set SCRIPT (the name used in messages) before sourcing.

KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

say() { printf '%s: %s\n' "${SCRIPT:-debian-lib}" "$*" >&2; }
unserved() { say "$*"; exit 3; }
fail() { say "$*"; exit 1; }

need_tools() {
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || fail "needs $tool, which is not installed"
  done
}

# The first non-security "deb" URI of the system's apt sources (deb822 first,
# then the one-line format). MIGRACE_DEBIAN_URI overrides it (a mirror, or a
# test of the "not served" path).
debian_uri() {
  uri=${MIGRACE_DEBIAN_URI:-}
  if [ -n "$uri" ]; then printf '%s\n' "$uri"; return 0; fi
  if [ -r /etc/apt/sources.list.d/debian.sources ]; then
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
  printf '%s\n' "$uri"
}

# private_apt_init DIR LINE: DIR gets apt's state folders, an empty dpkg
# status (with the real one apt would pick the installed packages' versions)
# and a sources.list holding LINE.
private_apt_init() {
  rm -rf "$1"
  mkdir -p "$1/lists/partial" "$1/cache/archives/partial"
  : > "$1/status"
  printf '%s\n' "$2" > "$1/sources.list"
}

# apt_private DIR TOOL ARGS...
apt_private() {
  dir=$1
  tool=$2
  shift 2
  "$tool" -q \
    -o Dir::Etc::SourceList="$dir/sources.list" \
    -o Dir::Etc::SourceParts=/dev/null \
    -o Dir::State::Lists="$dir/lists" \
    -o Dir::Cache="$dir/cache" \
    -o Dir::State::status="$dir/status" \
    "$@"
}

# apt_private_update DIR SUITE: exit 3 with apt's own words when the
# registry does not serve SUITE.
apt_private_update() {
  say "apt-get update ($2, private lists)"
  # apt-get update exits 0 when an index fails to download; its Err lines tell.
  if ! apt_private "$1" apt-get update >"$1/update.log" 2>&1 || grep -q '^Err:' "$1/update.log"; then
    sed 's/^/  /' "$1/update.log" >&2
    why=$(grep -A1 '^Err:' "$1/update.log" | sed -n '2{s/^ *//;p}')
    unserved "the registry at ${URI:-?} did not serve $2${why:+: $why}"
  fi
}

# cache_entry NAME: DEST, the folder of the caller's cached entry NAME (in
# MIGRACE_QEMU_CACHE, by default samples/.cache beside this file), and STAMP,
# the file the caller writes last, once the entry is complete.
cache_entry() {
  DEST="${MIGRACE_QEMU_CACHE:-$HERE/.cache}/$1"
  STAMP="$DEST/.complete"
}

# entry_complete PROGRAM...: STAMP is there and every PROGRAM is executable
# (what a caller's done_already asks).
entry_complete() {
  [ -f "$STAMP" ] || return 1
  for program in "$@"; do
    [ -x "$program" ] || return 1
  done
}

# cache_lock DIR: hold DIR/.lock on fd 9 until the script exits.
cache_lock() {
  mkdir -p "$1"
  command -v flock >/dev/null 2>&1 || return 0
  exec 9>"$1/.lock"
  flock 9
}

# answer_cached DEST ANSWER: when the caller's done_already holds, print
# ANSWER and exit 0; otherwise wait for DEST's lock (test workers may call at
# the same time: one fetches, the others wait for it) and check again.
answer_cached() {
  if done_already; then printf '%s\n' "$2"; exit 0; fi
  cache_lock "$1"
  if done_already; then printf '%s\n' "$2"; exit 0; fi
}

# fetch_unpacked DEST SUITE PKG VERSION ROOT PKGS...: PKG=VERSION must be what
# SUITE serves (exit 3 with what it serves instead); then PKGS (PKG=VERSION
# pins one) downloaded into DEST/debs and unpacked into ROOT. Leaves APT
# (the private state, for the caller's logs) and DEBS set; the caller
# removes both once it has checked the result.
fetch_unpacked() {
  dest=$1 suite=$2 pkg=$3 version=$4 root=$5
  shift 5
  need_tools apt-get apt-cache dpkg-deb
  [ -r "$KEYRING" ] || unserved "no Debian archive keyring at $KEYRING, cannot verify $suite"
  URI=$(debian_uri)
  say "using the system's Debian archive: $URI"
  APT="$dest/apt"
  DEBS="$dest/debs"
  rm -rf "$DEBS" "$root"
  mkdir -p "$DEBS" "$root"
  private_apt_init "$APT" "deb [signed-by=$KEYRING] $URI $suite main"
  apt_private_update "$APT" "$suite"
  served=$(apt_private "$APT" apt-cache madison "$pkg" 2>/dev/null | awk -F' *[|] *' '{ print $2 }' | tr '\n' ' ')
  case " $served " in
    *" $version "*) ;;
    "  ") unserved "$suite at $URI has no $pkg" ;;
    *) unserved "$suite at $URI serves $pkg ${served% }, not $version" ;;
  esac
  say "apt-get download ($# packages)"
  if ! (cd "$DEBS" && apt_private "$APT" apt-get download "$@") >"$APT/download.log" 2>&1; then
    sed 's/^/  /' "$APT/download.log" >&2
    unserved "the registry at $URI did not serve every $suite package needed"
  fi
  for deb in "$DEBS"/*.deb; do
    say "unpacking $(basename "$deb")"
    dpkg-deb -x "$deb" "$root"
  done
}
