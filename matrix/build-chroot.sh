#!/usr/bin/env bash
# Build the Debian SUITE chroot with Debian's QGIS in $MATRIX_CACHE/SUITE, unless it is there with
# the same recipe. Built in a temporary folder and renamed into place only on success, so an
# interrupted build is never reused. Usage: matrix/build-chroot.sh SUITE
set -euo pipefail
source "$(dirname "$0")/lib.sh"

SUITE=${1:?usage: build-chroot.sh SUITE}
# git and make: the test suite builds the plugin zip with `make package` (git archive)
PACKAGES="qgis python3-qgis qgis-providers python3-venv git make"
RECIPE="suite=$SUITE mirror=$MIRROR packages=$PACKAGES"
ROOT=$MATRIX_CACHE/$SUITE
STAMP=rsgeochem-matrix.stamp

if [ -f "$ROOT/$STAMP" ] && [ "$(head -n1 "$ROOT/$STAMP")" = "$RECIPE" ]; then
    log "$SUITE: chroot $ROOT is up to date"
    exit 0
fi

ensure_debootstrap
mkdir -p "$MATRIX_CACHE"
# leftovers of killed builds of this suite (their mounts first)
for old in "$MATRIX_CACHE"/.build-"$SUITE".*; do
    [ -e "$old" ] && safe_remove "$old"
done
BUILD=$(mktemp -d "$MATRIX_CACHE/.build-$SUITE.XXXXXX")
chmod 755 "$BUILD"  # the root of the chroot: mktemp makes it 0700
cleanup() {
    local status=$?
    unmount_under "$BUILD" || true
    if [ $status -ne 0 ]; then
        safe_remove "$BUILD"
        log "$SUITE: build failed (exit $status); nothing kept"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

started=$SECONDS
log "$SUITE: debootstrap into $BUILD"
debootstrap --variant=minbase --include=ca-certificates "$SUITE" "$BUILD" "$MIRROR"
log "$SUITE: debootstrap done in $((SECONDS - started)) s"

cp /etc/resolv.conf "$BUILD/etc/resolv.conf"
printf '#!/bin/sh\nexit 101\n' > "$BUILD/usr/sbin/policy-rc.d"  # no services start in the chroot
chmod +x "$BUILD/usr/sbin/policy-rc.d"
mount_chroot "$BUILD"
# sid's Release file on the mirror may be past its Valid-Until date
in_chroot "$BUILD" apt-get -o Acquire::Check-Valid-Until=false update
in_chroot "$BUILD" apt-get install -y --no-install-recommends $PACKAGES
in_chroot "$BUILD" apt-get clean
unmount_under "$BUILD"

{
    echo "$RECIPE"
    echo "built=$(date -u +%FT%TZ) seconds=$((SECONDS - started))"
    for package in qgis python3 python3-numpy python3-scipy python3-gdal; do
        version=$(chroot "$BUILD" dpkg-query -W -f='${db:Status-Abbrev}${Version}' "$package" 2>/dev/null || true)
        case $version in ii*) echo "$package=${version#ii }" ;; *) echo "$package=none" ;; esac
    done
} > "$BUILD/$STAMP"
[ -e "$ROOT" ] && safe_remove "$ROOT"
mv "$BUILD" "$ROOT"
log "$SUITE: chroot ready in $ROOT after $((SECONDS - started)) s"
