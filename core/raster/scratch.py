"""Scratch files of a run that never outlive it: temporary folders and partial outputs carry the
id of the process that made them, so a run killed before it could clean up (SIGKILL, a crash) has
its leftovers removed by the next run, while those of runs still going are left alone."""
import glob
import os
import re
import shutil
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path

PARTIAL_SUFFIX = '.partial.tif'
PARTIAL_OWNER = re.compile(r'\.pid(\d+)-[0-9a-f]+\.partial\.tif$')


def process_alive(pid):
    """True while process `pid` exists (also one of another user, which we may not signal)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def owner_alive(name, pattern):
    """False when `name` carries the id of a process that has ended (True when it carries none)."""
    match = pattern.search(name)
    return match is None or process_alive(int(match.group(1)))


def partial_path(path):
    """Hidden name, next to `path`, under which this process writes it until it is complete."""
    path = Path(path)
    return path.with_name(f'.{path.stem}.pid{os.getpid()}-{uuid.uuid4().hex[:8]}{PARTIAL_SUFFIX}')


def remove_stale_partials(path):
    """Remove partial files of `path` left by processes that have ended."""
    path = Path(path)
    for stale in path.parent.glob(f'.{glob.escape(path.stem)}.pid*{PARTIAL_SUFFIX}'):
        if not owner_alive(stale.name, PARTIAL_OWNER):
            stale.unlink(missing_ok=True)


@contextmanager
def scratch_folder(prefix):
    """A new temporary folder `<prefix>-pid<id>-…` removed with everything in it when the block
    ends, however it ends; folders of the same prefix left by ended processes are removed first."""
    base = Path(tempfile.gettempdir())
    owner = re.compile(rf'^{re.escape(prefix)}-pid(\d+)-')
    for stale in base.glob(f'{glob.escape(prefix)}-pid*-*'):
        if stale.is_dir() and not owner_alive(stale.name, owner):
            shutil.rmtree(stale, ignore_errors=True)
    folder = tempfile.mkdtemp(prefix=f'{prefix}-pid{os.getpid()}-')
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
