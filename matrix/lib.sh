# Shared helpers of the QGIS version matrix (sourced by matrix/*.sh; bash, run as root).
# Mounts into a chroot are only made through mount_chroot, whose caller has a trap that calls
# unmount_under; nothing is removed while something is mounted below it.

MATRIX_CACHE=${MATRIX_CACHE:-/var/cache/rsgeochem-matrix}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
export DEBIAN_FRONTEND=noninteractive

log() { printf '[matrix %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Mount points at or below DIR, deepest first (/proc/mounts escapes spaces; our paths have none).
mounts_under() {
    local dir
    dir=$(realpath -m "$1")
    awk -v d="$dir" '$2 == d || index($2, d "/") == 1 { print $2 }' /proc/mounts | sort -r
}

# Unmount everything at or below DIR (also leftovers of a killed run); lazily when busy.
unmount_under() {
    local target
    for target in $(mounts_under "$1"); do
        umount "$target" 2>/dev/null || umount -l "$target" || log "cannot unmount $target"
    done
    [ -z "$(mounts_under "$1")" ]
}

# /proc, /sys, /dev, /dev/pts and /dev/shm of the host inside the chroot ROOT.
mount_chroot() {
    local root=$1
    unmount_under "$root" || die "leftover mounts under $root"
    mount -t proc proc "$root/proc"
    mount --bind /sys "$root/sys"
    mount --bind /dev "$root/dev"
    mount --bind /dev/pts "$root/dev/pts"
    mkdir -p "$root/dev/shm"
    mount --bind /dev/shm "$root/dev/shm"
}

# debootstrap from Debian's packages, when missing (apt's lock may be held by another install).
ensure_debootstrap() {
    command -v debootstrap >/dev/null && return 0
    apt-get -o DPkg::Lock::Timeout=600 update
    apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends debootstrap
}

# rm -rf DIR, refused while anything is mounted below it; never leaves its file system.
safe_remove() {
    local dir=$1
    [ -e "$dir" ] || return 0
    unmount_under "$dir" || die "not removing $dir: still mounted: $(mounts_under "$dir" | tr '\n' ' ')"
    rm -rf --one-file-system "$dir"
}

# Run a command in the chroot ROOT with a clean environment.
in_chroot() {
    local root=$1
    shift
    chroot "$root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"
}

# The Debian version of an installed package in ROOT, without epoch and Debian revision.
debian_version() {
    { chroot "$1" dpkg-query -W -f='${Version}' "$2" 2>/dev/null || true; } | sed -e 's/^[0-9]*://' -e 's/[+~-].*//'
}

# The working tree's files (tracked, plus untracked ones git does not ignore; deleted ones skipped)
# as a one-commit git repository (the suite's `make package` uses git archive) in DEST.
copy_tree() {
    local dest=$1
    mkdir -p "$dest"
    git ls-files -z --cached --others --exclude-standard \
        | tar --null -T - --ignore-failed-read --warning=no-failed-read -cf - | tar -xf - -C "$dest"
    git -C "$dest" init -q
    git -C "$dest" add -A
    git -C "$dest" -c user.name=matrix -c user.email=matrix@localhost commit -qm "matrix snapshot"
}
