#!/bin/bash
# QEMU 11.1 from Debian sid in a chroot (it needs glibc 2.43; bookworm has
# 2.36), with sid's node 24, npm 12 and gdb 18, and migrace installed inside.
#
#   bash samples/sid-chroot.sh build            the chroot, once (cached)
#   bash samples/sid-chroot.sh install          + this checkout copied to /opt/migrace and
#                                               installed there with npm ci
#   bash samples/sid-chroot.sh test [FILE...]   + the real-QEMU integration tests inside, on
#                                               11.1 only (MIGRACE_TEST_QEMU=11.1); vitest's JSON
#                                               lands in test-results/vitest-sid.json
#   bash samples/sid-chroot.sh run -- CMD...    CMD inside the built chroot
#
# Parts: the mounts and their cleanup (every exit path: success, failure,
# Ctrl-C, SIGTERM: processes left inside are ended, then everything mounted
# below the chroot is unmounted, and a half-built chroot is removed only
# once nothing is mounted in it); build_chroot (debootstrap, the configure
# failure of its base packages fixed by apt-get -f install inside, the host's
# CA certificates for npm); install_project; run_tests; the command switch.
#
# The chroot is ${MIGRACE_QEMU_CACHE:-samples/.cache}/sid-chroot/root, built
# from the archive the system's apt uses (read at run time; only the chroot's
# own apt sources name it). The system's apt setup is never touched.
# Progress on stderr. Exit 0 on success, 3 when the registry does not serve
# sid (with the reason), the command's or vitest's status for run and test,
# 1 on any other failure. Needs root (chroot, mount), debootstrap, git.
set -eu

SCRIPT=sid-chroot
HERE=$(cd "$(dirname "$0")" && pwd)
CHECKOUT=$(dirname "$HERE")
# shellcheck source=samples/debian-lib.sh
. "$HERE/debian-lib.sh"

# Canonical: /proc/mounts and /proc/PID/root name the real path, not a symlink's.
DEST=$(realpath -m "${MIGRACE_QEMU_CACHE:-$HERE/.cache}/sid-chroot")
ROOT="$DEST/root"
STAMP="$DEST/.complete"
PACKAGES=qemu-system-x86,gdb,nodejs,npm,python3,make,g++,gcc,ca-certificates,procps
PROJECT=/opt/migrace
# The only environment commands inside see: nothing of the host's leaks in.
INSIDE_ENV=(env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8
  TERM=dumb XDG_CACHE_HOME=/tmp/xdg-sid npm_config_cafile=/etc/ssl/certs/ca-certificates.crt
  NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt)
# Set while a half-built chroot may be removed on failure.
PARTIAL=0
# The process group of the command running now (see spawn).
CHILD=

# ---- mounts and cleanup ------------------------------------------------

mounted_below() {
  # Mount points at or below $ROOT, deepest first.
  awk -v r="$ROOT" '$2 == r || index($2, r "/") == 1 { print $2 }' /proc/mounts | sort -r
}

# Processes whose root is the chroot: started by this script (npm, vitest,
# gdb, QEMU inside); an interrupted run must not leave them behind.
inside_pids() {
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/root" 2>/dev/null)" = "$ROOT" ] && printf '%s\n' "${p#/proc/}"
  done
  return 0
}

end_inside_processes() {
  pids=$(inside_pids)
  [ -n "$pids" ] || return 0
  say "ending $(printf '%s\n' "$pids" | wc -l) process(es) left inside the chroot"
  # shellcheck disable=SC2086
  kill -TERM $pids 2>/dev/null || true
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    [ -n "$(inside_pids)" ] || return 0
    sleep 0.5
  done
  # shellcheck disable=SC2046
  kill -KILL $(inside_pids) 2>/dev/null || true
  sleep 0.5
}

unmount_all() {
  for m in $(mounted_below); do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || say "cannot unmount $m"
  done
}

cleanup() {
  status=$?
  trap - EXIT INT TERM
  if [ -n "$CHILD" ]; then
    kill -TERM -- "-$CHILD" 2>/dev/null || true
    wait "$CHILD" 2>/dev/null || true
  fi
  end_inside_processes
  unmount_all
  if [ -n "$(mounted_below)" ]; then
    say "still mounted below $ROOT: $(mounted_below | tr '\n' ' ')"
    status=1
  elif [ "$PARTIAL" = 1 ]; then
    # Only with nothing mounted: rm -rf through a bind of /dev would reach the host's.
    say "removing the half-built chroot"
    rm -rf "$ROOT"
  fi
  exit "$status"
}

mount_all() {
  for d in proc sys dev; do mkdir -p "$ROOT/$d"; done
  mountpoint -q "$ROOT/proc" || mount -t proc proc "$ROOT/proc"
  mountpoint -q "$ROOT/sys" || mount -t sysfs sysfs "$ROOT/sys"
  mountpoint -q "$ROOT/dev" || mount --bind /dev "$ROOT/dev"
  # The host's resolver, for apt and npm inside.
  cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
}

# spawn CMD...: CMD in its own process group, waited for in the background,
# so a SIGINT or SIGTERM sent to this script runs the cleanup at once (bash
# runs traps only between foreground commands) and the cleanup can end the
# whole group by its id. stdin is the script's own (fd 3).
spawn() {
  setsid "$@" <&3 &
  CHILD=$!
  st=0
  wait "$CHILD" || st=$?
  CHILD=
  return "$st"
}

inside() {
  spawn chroot "$ROOT" "${INSIDE_ENV[@]}" "$@"
}

# ---- the chroot --------------------------------------------------------

build_chroot() {
  [ -f "$STAMP" ] && return 0
  need_tools debootstrap chroot mount
  URI=$(debian_uri)
  say "debootstrap sid from $URI into $ROOT (minutes; the README has the times)"
  [ -z "$(mounted_below)" ] || fail "something is mounted below $ROOT; unmount it first"
  rm -rf "$ROOT"
  mkdir -p "$ROOT"
  PARTIAL=1
  if ! spawn debootstrap --variant=minbase --include="$PACKAGES" sid "$ROOT" "$URI" >"$DEST/debootstrap.log" 2>&1; then
    if grep -q 'Failure while configuring base packages' "$DEST/debootstrap.log"; then
      # debootstrap's resolver misses some of npm's node-* dependencies; apt finds them.
      say "debootstrap could not configure every base package; apt-get -f install inside"
      mount_all
      inside env DEBIAN_FRONTEND=noninteractive apt-get -f install -y -q >"$DEST/apt-fix.log" 2>&1 \
        || { tail -n 20 "$DEST/apt-fix.log" | sed 's/^/  /' >&2; fail "apt-get -f install inside the chroot failed (log: $DEST/apt-fix.log)"; }
      rm -rf "$ROOT/debootstrap"
    else
      tail -n 5 "$DEST/debootstrap.log" | sed 's/^/  /' >&2
      if grep -qE "Failed getting release file|Couldn't download|Failed getting release signature|Failure trying to run: .*(wget|apt-get).*download" "$DEST/debootstrap.log"; then
        unserved "the registry at $URI did not serve sid: $(grep -m1 -E '^E: ' "$DEST/debootstrap.log" | sed 's/^E: //')"
      fi
      fail "debootstrap failed (log: $DEST/debootstrap.log)"
    fi
  fi
  mount_all
  # npm reaches the registry through the host's certificate authorities.
  mkdir -p "$ROOT/usr/local/share/ca-certificates"
  cp /usr/local/share/ca-certificates/*.crt "$ROOT/usr/local/share/ca-certificates/" 2>/dev/null || true
  inside update-ca-certificates >"$DEST/ca.log" 2>&1 || fail "update-ca-certificates inside failed (log: $DEST/ca.log)"
  inside sh -c 'node --version; npm --version; gdb --version | head -n 1; qemu-system-x86_64 -version | head -n 1' >"$DEST/versions.txt" 2>&1 \
    || { sed 's/^/  /' "$DEST/versions.txt" >&2; fail "the chroot's node, npm, gdb or QEMU does not run"; }
  say "inside: $(tr '\n' ' ' <"$DEST/versions.txt")"
  : > "$STAMP"
  PARTIAL=0
}

# ---- the project inside ------------------------------------------------

install_project() {
  command -v git >/dev/null 2>&1 || fail "needs git to list the checkout's files"
  target="$ROOT$PROJECT"
  mkdir -p "$target"
  # The checkout's files as they are now (tracked and untracked, not ignored),
  # over the previous copy; node_modules stays while package-lock.json does.
  find "$target" -mindepth 1 -maxdepth 1 ! -name node_modules -exec rm -rf {} +
  (cd "$CHECKOUT" && git ls-files -z --cached --others --exclude-standard \
    | while IFS= read -r -d '' f; do [ -f "$f" ] && printf '%s\0' "$f"; done | xargs -0 -r cp --parents -t "$target")
  lock_hash=$(cat "$CHECKOUT/package-lock.json" "$CHECKOUT/package.json" | sha256sum | cut -c1-16)
  mount_all
  if [ "$(cat "$target/node_modules/.migrace-lock" 2>/dev/null)" != "$lock_hash" ]; then
    say "npm ci inside (node $(sed -n 1p "$DEST/versions.txt"), npm $(sed -n 2p "$DEST/versions.txt"); builds better-sqlite3: minutes)"
    rm -rf "$target/node_modules"
    inside sh -c "cd $PROJECT && npm ci --no-audit --no-fund" >"$DEST/npm-ci.log" 2>&1 \
      || { tail -n 20 "$DEST/npm-ci.log" | sed 's/^/  /' >&2; fail "npm ci inside failed (log: $DEST/npm-ci.log)"; }
    printf '%s\n' "$lock_hash" > "$target/node_modules/.migrace-lock"
  else
    say "npm run build inside (node_modules as installed for this package-lock.json)"
    inside sh -c "cd $PROJECT && npm run build" >"$DEST/build.log" 2>&1 \
      || { tail -n 20 "$DEST/build.log" | sed 's/^/  /' >&2; fail "npm run build inside failed (log: $DEST/build.log)"; }
  fi
  # npm 12 exits 0 when it skipped an install script: check the result, with
  # the message migrace itself gives.
  inside sh -c "cd $PROJECT && node bin/migrace.js sessions --db /nonexistent.db" >"$DEST/check.log" 2>&1 || true
  if grep -q 'cannot start' "$DEST/check.log"; then
    sed 's/^/  /' "$DEST/check.log" >&2
    fail "migrace does not start inside the chroot"
  fi
}

run_tests() {
  files=("$@")
  [ ${#files[@]} -gt 0 ] || files=(test/integration/record-qemu.test.ts test/integration/replay.test.ts test/integration/probes-real.test.ts)
  rm -rf "$ROOT$PROJECT/test-results"
  mkdir -p "$CHECKOUT/test-results"
  rm -f "$CHECKOUT/test-results/vitest-sid.json" "$CHECKOUT/test-results/survivors-sid.txt"
  say "vitest inside on QEMU 11.1: ${files[*]}"
  set +e
  inside sh -c "cd $PROJECT && MIGRACE_TEST_QEMU=11.1 npx vitest run --reporter=default --reporter=json --outputFile.json=test-results/vitest.json $(printf '%q ' "${files[@]}")"
  status=$?
  set -e
  [ -f "$ROOT$PROJECT/test-results/vitest.json" ] && cp "$ROOT$PROJECT/test-results/vitest.json" "$CHECKOUT/test-results/vitest-sid.json"
  [ -f "$ROOT$PROJECT/test-results/survivors.txt" ] && cp "$ROOT$PROJECT/test-results/survivors.txt" "$CHECKOUT/test-results/survivors-sid.txt"
  return "$status"
}

# ---- the command -------------------------------------------------------

main() {
  cmd=${1:-build}
  [ $# -gt 0 ] && shift
  case "$cmd" in
    build|install|test|run) ;;
    *) say "usage: sid-chroot.sh build | install | test [FILE...] | run -- CMD..."; exit 2 ;;
  esac
  [ "$(id -u)" -eq 0 ] || fail "needs root (debootstrap, chroot, mount)"
  mkdir -p "$DEST"
  exec 3<&0
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  # One run at a time: a second waits, then finds the chroot built.
  cache_lock "$DEST"
  case "$cmd" in
    build) build_chroot ;;
    install) build_chroot; install_project ;;
    test) build_chroot; install_project; run_tests "$@" ;;
    run)
      [ "${1:-}" = "--" ] && shift
      [ $# -gt 0 ] || fail "run needs a command: sid-chroot.sh run -- CMD..."
      [ -f "$STAMP" ] || fail "no chroot yet: run sid-chroot.sh build first"
      mount_all
      set +e
      inside "$@"
      status=$?
      set -e
      return "$status" ;;
  esac
}

# The whole script is parsed before it runs: an edit during a long build
# cannot derail a running copy.
main "$@"
