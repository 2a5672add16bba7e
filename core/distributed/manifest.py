"""The manifest of a tiled run: which tiles are complete, with their files' SHA-256, so that a
restarted run skips them. One JSON line per finished tile, appended as results arrive (an
interrupted write leaves at most one unreadable last line, which is ignored); the first line holds
the run's fingerprint (step, parameters, inputs), and a run with another fingerprint starts over."""
import hashlib
import json
import os
import shutil
from pathlib import Path

from ..errors import InputError

MANIFEST_NAME = 'manifest.jsonl'
HASH_CHUNK = 4 * 2 ** 20


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, 'rb') as stream:
        for chunk in iter(lambda: stream.read(HASH_CHUNK), b''):
            digest.update(chunk)
    return digest.hexdigest()


def fingerprint(description):
    """SHA-256 of a JSON-able description of a run (numpy arrays as their bytes' hash)."""
    def plain(value):
        if hasattr(value, 'tobytes'):
            return hashlib.sha256(value.tobytes()).hexdigest()
        return str(value)
    return hashlib.sha256(json.dumps(description, sort_keys=True, default=plain).encode()).hexdigest()


def input_stamp(path):
    """What identifies an input file's version cheaply: size and modification time (empty for
    GDAL virtual paths such as /vsis3/, which are not stat-ed here)."""
    try:
        stat = os.stat(path)
    except OSError:
        return ''
    return f'{stat.st_size}:{stat.st_mtime_ns}'


def read_manifest(path):
    """(fingerprint, {tile name: result}) of a manifest file; (None, {}) when it is unreadable."""
    results = {}
    try:
        with open(path) as stream:
            header = json.loads(stream.readline()).get('fingerprint')
            for line in stream:
                try:
                    entry = json.loads(line)
                    results[entry['tile']] = entry['result']
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut short by an interrupted run
    except (OSError, ValueError, AttributeError):
        return None, {}
    return header, results


def recorded_stamp(manifest_path):
    """What identifies the data of an earlier tiled run's output: its fingerprint and its tiles'
    checksums in tile order (not in the order they finished)."""
    header, results = read_manifest(manifest_path)
    tiles = sorted((name, result['files']) for name, result in results.items())
    return fingerprint({'run': header, 'tiles': tiles})


class Manifest:
    """Complete tiles of a run in `folder`, each a result dict with `files` {output: [relative path,
    sha256]} and the tile's partial statistics."""

    def __init__(self, folder, run_fingerprint):
        self.folder = Path(folder)
        self.path = self.folder / MANIFEST_NAME
        self.fingerprint = run_fingerprint
        header, results = read_manifest(self.path)
        if header == run_fingerprint:
            self.results = results
        else:  # a new run, or another run's tiles: start over
            self.results = {}
            if self.folder.exists() and not self.path.exists() and any(self.folder.iterdir()):
                raise InputError(f'"{self.folder}" exists and is not a tile folder of an earlier run; '
                                 'choose another output name or move that folder.', 'OUTPUT')
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder.mkdir(parents=True)
            self.path.write_text(json.dumps({'fingerprint': run_fingerprint}) + '\n')

    def complete(self, tile_name):
        """The tile's recorded result when each of its files still has the recorded checksum."""
        result = self.results.get(tile_name)
        if result is None:
            return None
        for relative, checksum in result['files'].values():
            path = self.folder / relative
            if not path.is_file() or file_sha256(path) != checksum:
                return None
        return result

    def record(self, tile_name, result):
        self.results[tile_name] = result
        with open(self.path, 'a') as stream:
            stream.write(json.dumps({'tile': tile_name, 'result': result}) + '\n')
            stream.flush()
            os.fsync(stream.fileno())
