#!/bin/bash
# Build Debian bullseye's QEMU 5.2 (1:5.2+dfsg-11+deb11u3, the unpatched
# build fetch-qemu.sh 5.2 fetches) from its own source with -O2 -g: what gdb
# sees with debuginfod. Without touching the system's apt setup.
#
#   bash samples/build-qemu-dbg.sh                 build it (once; later runs answer at once)
#   bash samples/build-qemu-dbg.sh --cached-only   the path if built, else exit 4 and say so
#
# Parts: the cache check under the lock; the build-dependency check; the
# source through a private deb-src list (apt-get source: the upstream
# tarball plus Debian's patches); configure (x86_64-softmmu, -g, optional
# features off) and ninja, both resumable; the outputs; the stamp.
#
# Outputs in ${MIGRACE_QEMU_CACHE:-samples/.cache}/qemu-5.2-dbg/:
#   qemu-system-x86_64                   unstripped, full debug info
#   split/qemu-system-x86_64             stripped (--strip-all), with a .gnu_debuglink
#   split/qemu-system-x86_64.debug       its debug file (objcopy --only-keep-debug):
#                                        gdb loads it on its own, from beside the binary
#   debug-file-directory/.build-id/NN/REST.debug
#                                        the same file in the build-id layout of
#                                        /usr/lib/debug (Debian's -dbgsym packages), for
#                                        `set debug-file-directory` (MIGRACE_DEBUG_FILE_DIRECTORY)
#   build-id-only/qemu-system-x86_64     stripped (--strip-all) with no .gnu_debuglink:
#                                        its debug file is found only by build-id there
#   src/                                 the source and build tree (file:line resolve here)
# Run it with `-L /usr/share/seabios -L /usr/share/qemu` (bookworm's firmware):
# the dfsg tarball has no firmware blobs. Building only the qemu-system-x86_64
# target needs none of them, so no placeholders are made.
#
# Last stdout line: the unstripped binary's path; progress on stderr. The
# README has the times measured here. Exit 0 when built, 3 when the registry does not
# serve the source (with the reason), 4 with --cached-only when not built,
# 1 on any other failure (a missing build-dependency names the apt-get
# install that fixes it).
set -eu

SCRIPT=build-qemu-dbg
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=samples/debian-lib.sh
. "$HERE/debian-lib.sh"

# All of it in one function: bash reads a script while it runs it, and an
# edit during the long build would otherwise run the wrong lines after it.
main() {
  SUITE=bullseye
  VERSION='1:5.2+dfsg-11+deb11u3'
  cache_entry qemu-5.2-dbg
  SRC="$DEST/src/qemu"
  BIN="$DEST/qemu-system-x86_64"
  SPLIT="$DEST/split/qemu-system-x86_64"
  BY_ID="$DEST/build-id-only/qemu-system-x86_64"

  built() { entry_complete "$BIN" "$SPLIT"; }
  done_already() { built && [ -x "$BY_ID" ]; }
  # From the unstripped binary (a fraction of a second): written aside and
  # renamed, so a reader never sees half of it.
  make_build_id_only() {
    mkdir -p "$DEST/build-id-only"
    objcopy --strip-all "$BIN" "$BY_ID.tmp.$$"
    mv "$BY_ID.tmp.$$" "$BY_ID"
  }

  case "${1:-}" in
    '') ;;
    --cached-only)
      built || { say "not built yet in $DEST: run bash samples/build-qemu-dbg.sh (minutes; .ci/install does)"; exit 4; } ;;
    *) say "usage: build-qemu-dbg.sh [--cached-only]"; exit 2 ;;
  esac
  # A build made before build-id-only/ existed gets it without a rebuild;
  # nothing else in it is touched.
  if built && [ ! -x "$BY_ID" ]; then
    cache_lock "$DEST"
    [ -x "$BY_ID" ] || { need_tools objcopy; say "stripped copy without a debuglink"; make_build_id_only; }
  fi
  answer_cached "$DEST" "$BIN"

  # Build-dependencies (.ci/install installs them): Debian's list minus every
  # optional feature switched off below.
  BUILD_DEPS='gcc make ninja-build meson pkg-config python3 libglib2.0-dev libpixman-1-dev zlib1g-dev dpkg-dev binutils'
  need_tools apt-get dpkg-source gcc ninja meson pkg-config python3 objcopy readelf
  for mod in glib-2.0 gthread-2.0 pixman-1 zlib; do
    pkg-config --exists "$mod" || fail "needs the development files of $mod; install the build-dependencies: apt-get install -y --no-install-recommends $BUILD_DEPS"
  done

  # The source, once: the upstream tarball and Debian's patches, applied by dpkg-source.
  if [ ! -f "$SRC/.unpacked" ]; then
    [ -r "$KEYRING" ] || unserved "no Debian archive keyring at $KEYRING, cannot verify $SUITE"
    URI=$(debian_uri)
    say "using the system's Debian archive: $URI"
    APT="$DEST/apt"
    private_apt_init "$APT" "deb-src [signed-by=$KEYRING] $URI $SUITE main"
    apt_private_update "$APT" "$SUITE"
    rm -rf "$DEST/src"
    mkdir -p "$DEST/src"
    say "apt-get source qemu=$VERSION"
    if ! (cd "$DEST/src" && apt_private "$APT" apt-get source --download-only "qemu=$VERSION") >"$APT/source.log" 2>&1; then
      sed 's/^/  /' "$APT/source.log" >&2
      unserved "$SUITE at $URI does not serve the source of qemu $VERSION"
    fi
    (cd "$DEST/src" && dpkg-source -x ./*.dsc qemu) >"$APT/unpack.log" 2>&1 || { sed 's/^/  /' "$APT/unpack.log" >&2; fail "dpkg-source -x failed"; }
    rm -rf "$APT" "$DEST/src"/*.tar.* "$DEST/src"/*.dsc
    : > "$SRC/.unpacked"
  fi

  # Everything a TCG x86_64 guest does not need is off: fewer build-dependencies
  # and a shorter build. configure's own default is -O2 (meson optimization=2).
  CONFIGURE=(--target-list=x86_64-softmmu --extra-cflags=-g
    --disable-docs --disable-tools --disable-guest-agent --disable-capstone --disable-slirp --disable-fdt
    --disable-werror --disable-gtk --disable-sdl --disable-vnc --disable-spice --disable-curl --disable-gnutls
    --disable-nettle --disable-gcrypt --disable-libusb --disable-usb-redir --disable-virglrenderer --disable-opengl
    --disable-xen --disable-linux-aio --disable-linux-io-uring --disable-libiscsi --disable-libnfs --disable-rbd
    --disable-glusterfs --disable-seccomp --disable-cap-ng --disable-attr --disable-brlapi --disable-curses
    --disable-vde --disable-netmap --disable-rdma --disable-pvrdma --disable-numa --disable-libxml2 --disable-libssh
    --disable-bzip2 --disable-lzo --disable-snappy --disable-zstd --disable-libpmem --disable-libudev --disable-mpath
    --disable-smartcard --disable-auth-pam --disable-vhost-user --disable-vhost-net --disable-vhost-kernel
    --disable-vhost-vsock --disable-vhost-scsi --disable-vhost-vdpa --disable-tpm --disable-kvm --audio-drv-list=)

  # Configure once per set of options; a rerun after a failed build resumes ninja.
  mkdir -p "$SRC/build"
  if [ "$(cat "$SRC/build/.configured" 2>/dev/null)" != "${CONFIGURE[*]}" ]; then
    say "configure (x86_64-softmmu, -O2 -g)"
    (cd "$SRC/build" && ../configure "${CONFIGURE[@]}") >"$DEST/configure.log" 2>&1 || { tail -n 30 "$DEST/configure.log" | sed 's/^/  /' >&2; fail "configure failed (log: $DEST/configure.log)"; }
    printf '%s\n' "${CONFIGURE[*]}" > "$SRC/build/.configured"
  fi

  say "ninja -C build qemu-system-x86_64 (minutes: the README has the times)"
  ninja -C "$SRC/build" ${MIGRACE_NINJA_JOBS:+-j "$MIGRACE_NINJA_JOBS"} qemu-system-x86_64 >"$DEST/ninja.log" 2>&1 || { tail -n 30 "$DEST/ninja.log" | sed 's/^/  /' >&2; fail "the build failed (log: $DEST/ninja.log)"; }

  say "debug file and stripped copies"
  rm -rf "$DEST/split" "$DEST/debug-file-directory" "$DEST/build-id-only"
  mkdir -p "$DEST/split"
  cp "$SRC/build/qemu-system-x86_64" "$BIN.tmp"
  mv "$BIN.tmp" "$BIN"
  objcopy --only-keep-debug "$BIN" "$SPLIT.debug"
  # --add-gnu-debuglink stores the file's name and CRC; gdb looks beside the binary.
  (cd "$DEST/split" && objcopy --strip-all --add-gnu-debuglink=qemu-system-x86_64.debug "$BIN" qemu-system-x86_64)
  build_id=$(readelf -n "$BIN" | awk '/Build ID:/ { print $3; exit }')
  [ -n "$build_id" ] || fail "the build has no GNU build-id note"
  mkdir -p "$DEST/debug-file-directory/.build-id/${build_id:0:2}"
  ln "$SPLIT.debug" "$DEST/debug-file-directory/.build-id/${build_id:0:2}/${build_id:2}.debug"
  make_build_id_only

  "$BIN" -L /usr/share/seabios -L /usr/share/qemu -version >"$DEST/version.txt" 2>&1 || { sed 's/^/  /' "$DEST/version.txt" >&2; fail "the built binary does not run"; }
  say "$(head -n 1 "$DEST/version.txt") (build-id $build_id)"
  : > "$STAMP"
  printf '%s\n' "$BIN"
}

main "$@"
