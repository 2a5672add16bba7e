#!/usr/bin/env bash
# `make test-matrix`: the test suite and both shipped workflows on each QGIS version.
#   QGIS 3.22  the host (Debian 12): the workflows only; `make test` runs the suite (pass its log
#              as HOST_PYTEST_LOG to put its counts in the summary)
#   QGIS 3.40  Debian 13 "trixie" chroot, Python 3.13
#   QGIS 3.44  Debian "sid" chroot, Python 3.14
# Chroots, wheels and the chroots' venvs are cached in $MATRIX_CACHE (/var/cache/rsgeochem-matrix)
# and rebuilt only when missing or when their recipe changed. The tree under test is a copy of the
# working tree (tracked and untracked-but-not-ignored files), so uncommitted work is tested.
# Logs and outputs: out/matrix/<suite>/. Exit status non-zero if any leg failed.
# Usage: matrix/run.sh [SUITE...]   (default: trixie sid; MATRIX_HOST=0 skips the host leg)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
source matrix/lib.sh

SUITES=${*:-trixie sid}
MATRIX_HOST=${MATRIX_HOST:-1}
HOST_PYTEST_LOG=${HOST_PYTEST_LOG:-}
OUT=$REPO/out/matrix
HOST_PIP=(".venv/bin/python" -m pip)  # made by `make setup`; only downloads wheels here
VENV=/opt/rsgeochem-venv              # inside each chroot
RUN=/root/matrix-run                  # inside each chroot: the copy under test and its outputs
[ "$(id -u)" = 0 ] || die "run as root (debootstrap, chroot and mounts)"
mkdir -p "$OUT"

# --- pieces of a leg ------------------------------------------------------------------------------

pin() { sed -n "s/^$2==//p" "$1"; }

# Debian's numpy (and scipy, where the chroot has python3-scipy) must equal the target's pins.
check_pins() {
    local root=$1 constraints=$2 package debian pinned
    for package in numpy scipy; do
        debian=$(debian_version "$root" "python3-$package")
        pinned=$(pin "$constraints" "$package")
        [ -n "$pinned" ] || die "$constraints pins no $package"
        if [ -n "$debian" ] && [ "$debian" != "$pinned" ]; then
            die "the chroot's Debian $package is $debian but $constraints pins $pinned: update the pin"
        fi
    done
}

# Wheels for the chroot's Python, downloaded on the host (pip inside a Python 3.13+ chroot rejects
# this machine's registry certificate chain); cached per suite, keyed by the requirement files.
ensure_wheels() {
    local suite=$1 python_version=$2 constraints=$3 key=$4
    local wheels=$MATRIX_CACHE/wheels/$suite tmp
    if [ "$(cat "$wheels/.key" 2>/dev/null)" = "$key" ]; then
        return 0
    fi
    log "$suite: downloading wheels for Python $python_version"
    mkdir -p "$MATRIX_CACHE/wheels"
    tmp=$(mktemp -d "$MATRIX_CACHE/wheels/.download-$suite.XXXXXX")
    "${HOST_PIP[@]}" download --quiet --disable-pip-version-check --only-binary=:all: \
        --python-version "$python_version" --platform manylinux_2_28_x86_64 \
        --platform manylinux2014_x86_64 --platform any -d "$tmp" \
        -r requirements-dev.txt -c "$constraints" > "$OUT/$suite/wheels.log" 2>&1 \
        || { cat "$OUT/$suite/wheels.log"; rm -rf "$tmp"; die "$suite: wheel download failed"; }
    echo "$key" > "$tmp/.key"
    rm -rf "$wheels"
    mv "$tmp" "$wheels"
}

# The target's venv inside the chroot: Debian's Python with --system-site-packages (QGIS, GDAL,
# numpy), the wheels installed offline; rebuilt when the key changed.
ensure_venv() {
    local suite=$1 root=$2 constraints=$3 key=$4
    if [ "$(cat "$root$VENV/.key" 2>/dev/null)" = "$key" ]; then
        return 0
    fi
    log "$suite: creating $VENV in the chroot"
    rm -rf --one-file-system "$root$VENV" "$root/opt/rsgeochem-wheels"
    cp -al "$MATRIX_CACHE/wheels/$suite" "$root/opt/rsgeochem-wheels"
    in_chroot "$root" python3 -m venv --system-site-packages "$VENV"
    in_chroot "$root" "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-index \
        --find-links /opt/rsgeochem-wheels -c "$RUN/rsgeochem/$constraints" \
        -r "$RUN/rsgeochem/requirements-dev.txt"
    rm -rf --one-file-system "$root/opt/rsgeochem-wheels"
    echo "$key" > "$root$VENV/.key"
}

# One summary line from OUT/<leg>/{versions,result}.env and the pytest log.
summary_line() {
    local leg=$1 label=$2 seconds=$3 pytest_log=$4 note=${5:-}
    local dir=$OUT/$leg qgis=? python=? pytest_exit=- demo_exit=1 counts workflows tail
    if [ -f "$dir/versions.env" ]; then
        qgis=$(sed -n 's/^qgis=//p' "$dir/versions.env")
        python=$(sed -n 's/^python=//p' "$dir/versions.env")
    fi
    [ -f "$dir/result.env" ] && source "$dir/result.env"
    if [ -n "$pytest_log" ] && [ -f "$pytest_log" ]; then
        tail=$(grep -E '[0-9]+ (passed|failed|errors?)' "$pytest_log" | tail -n 1)
        local passed failed errors skipped
        passed=$(grep -oE '[0-9]+ passed' <<< "$tail" | grep -oE '[0-9]+' || echo 0)
        failed=$(grep -oE '[0-9]+ failed' <<< "$tail" | grep -oE '[0-9]+' || echo 0)
        errors=$(grep -oE '[0-9]+ errors?' <<< "$tail" | grep -oE '[0-9]+' || echo 0)
        skipped=$(grep -oE '[0-9]+ skipped' <<< "$tail" | grep -oE '[0-9]+' || echo 0)
        counts="$passed passed, $((failed + errors)) failed"
        [ "$skipped" = 0 ] || counts+=", $skipped skipped"
        counts+=$note
        [ -n "$tail" ] || counts="pytest gave no result$note"
    else
        counts="pytest not run here$note"
    fi
    if [ "$demo_exit" = 0 ]; then workflows="workflows ok"; else workflows="workflows FAILED"; fi
    echo "QGIS $qgis ($label, Python $python): $counts, $workflows, $seconds s"
}

# A chroot leg, in a subshell whose EXIT trap unmounts everything, whatever happens.
chroot_leg() (
    local suite=$1 root=$MATRIX_CACHE/$1
    local constraints=matrix/constraints-$suite.txt dir=$OUT/$suite python_version key started
    [ -f "$root/rsgeochem-matrix.stamp" ] || die "$suite: no chroot in $root"
    [ -f "$constraints" ] || die "$suite: no $constraints"
    trap 'unmount_under "$root" || log "$suite: mounts left under $root"' EXIT
    trap 'exit 130' INT TERM
    check_pins "$root" "$constraints"
    python_version=$(chroot "$root" python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    key="python=$python_version $(cat requirements.txt requirements-dev.txt "$constraints" | sha256sum | cut -c1-16)"
    ensure_wheels "$suite" "$python_version" "$constraints" "$key"

    started=$SECONDS
    mount_chroot "$root"
    mount -t tmpfs -o size=8g,mode=1777 tmpfs "$root/tmp"  # test temp files vanish with the leg
    safe_remove "$root$RUN"
    copy_tree "$root$RUN/rsgeochem"
    ensure_venv "$suite" "$root" "$constraints" "$key"
    ln -s "$VENV" "$root$RUN/rsgeochem/.venv"
    local venv_seconds=$((SECONDS - started))
    started=$SECONDS
    log "$suite: running the suite and the workflows"
    in_chroot "$root" bash "$RUN/rsgeochem/matrix/leg.sh" "$RUN/out" || true
    echo "seconds=$((SECONDS - started)) setup_seconds=$venv_seconds" > "$root$RUN/out/time.env"
    cp -r "$root$RUN/out/." "$dir/"
)

host_leg() {
    local started=$SECONDS
    log "host: QGIS 3.22 workflows (the suite runs in make test)"
    bash matrix/leg.sh "$OUT/host" --no-pytest || true
    echo "seconds=$((SECONDS - started))" > "$OUT/host/time.env"
}

leg_seconds() { sed -n 's/^seconds=\([0-9]*\).*/\1/p' "$OUT/$1/time.env" 2>/dev/null || echo '?'; }

leg_ok() {
    local pytest_exit=- demo_exit=1
    [ -f "$OUT/$1/result.env" ] || return 1
    source "$OUT/$1/result.env"
    [ "$demo_exit" = 0 ] && { [ "$pytest_exit" = 0 ] || [ "$pytest_exit" = - ]; }
}

# --- the matrix -----------------------------------------------------------------------------------

declare -A BUILD_PID
ensure_debootstrap  # once, before the parallel builds
for suite in $SUITES; do
    rm -rf "${OUT:?}/$suite"
    mkdir -p "$OUT/$suite"
    # missing chroots build in parallel (network and dpkg bound) while the host leg runs
    bash matrix/build-chroot.sh "$suite" > "$OUT/$suite/build.log" 2>&1 &
    BUILD_PID[$suite]=$!
done
# interrupted: stop the builds (their own traps unmount and remove their half-built chroots)
trap 'for pid in "${BUILD_PID[@]}"; do kill "$pid" 2>/dev/null || true; done; wait; exit 130' INT TERM

lines=()
failed=0
if [ "$MATRIX_HOST" = 1 ]; then
    rm -rf "$OUT/host"
    host_leg
    note=""
    [ -n "$HOST_PYTEST_LOG" ] && note=" (make test)"
    lines+=("$(summary_line host 'bookworm, host' "$(leg_seconds host)" "$HOST_PYTEST_LOG" "$note")")
    leg_ok host || failed=1
fi

for suite in $SUITES; do
    if wait "${BUILD_PID[$suite]}"; then
        grep -E 'chroot ready|up to date' "$OUT/$suite/build.log" | tail -n 1 >&2
        status=0
        chroot_leg "$suite" || status=$?
        [ $status -eq 0 ] || log "$suite: leg aborted (exit $status)"
        lines+=("$(summary_line "$suite" "$suite" "$(leg_seconds "$suite")" "$OUT/$suite/pytest.log")")
    else
        tail -n 20 "$OUT/$suite/build.log"
        lines+=("QGIS ? ($suite): chroot build failed, see out/matrix/$suite/build.log")
    fi
    leg_ok "$suite" || failed=1
done

echo
echo "=== QGIS version matrix ==="
printf '%s\n' "${lines[@]}" | tee "$OUT/summary.txt"
exit $failed
