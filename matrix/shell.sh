#!/usr/bin/env bash
# A shell (or COMMAND) in a matrix chroot, in a fresh copy of the working tree whose .venv is the
# chroot's venv, with the same mounts as a leg (unmounted on exit). Run `make test-matrix` once
# first. Usage: matrix/shell.sh SUITE [COMMAND...]   e.g. matrix/shell.sh trixie .venv/bin/python -m pytest test/test_anomalies.py
set -euo pipefail
cd "$(dirname "$0")/.."
source matrix/lib.sh
SUITE=${1:?usage: shell.sh SUITE [COMMAND...]}
shift
ROOT=$MATRIX_CACHE/$SUITE
RUN=/root/matrix-shell
[ -x "$ROOT/opt/rsgeochem-venv/bin/python" ] || die "no venv in $ROOT: run make test-matrix first"
trap 'unmount_under "$ROOT" || log "mounts left under $ROOT"' EXIT
mount_chroot "$ROOT"
mount -t tmpfs -o size=8g,mode=1777 tmpfs "$ROOT/tmp"
safe_remove "$ROOT$RUN"
copy_tree "$ROOT$RUN/rsgeochem"
ln -s /opt/rsgeochem-venv "$ROOT$RUN/rsgeochem/.venv"
[ $# -gt 0 ] || set -- bash
status=0
in_chroot "$ROOT" QT_QPA_PLATFORM=offscreen PYTHONDONTWRITEBYTECODE=1 TERM="${TERM:-dumb}" \
    bash -c 'cd "$0" && exec "$@"' "$RUN/rsgeochem" "$@" || status=$?
exit $status
