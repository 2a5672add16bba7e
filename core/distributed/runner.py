"""Running a step's tile tasks: on a Dask cluster (`distributed.Client` futures, retried when a task
fails or its worker dies) or, without a scheduler, one after another in this process. Tiles the
manifest lists as complete are skipped; progress counts finished tiles; cancel cancels the
futures. Each task returns the checksums of the tile files it wrote and its partial statistics."""
import os
import shutil
import tempfile
import time
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from osgeo import gdal

from ..dependencies import require
from ..errors import InputError
from ..raster.blockio import (
    check_cancel,
    creation_options,
    gtiff_creation_options,
    remove_quietly,
    user_creation_options,
)
from ..raster.memory import relax_malloc_trim
from ..raster.scratch import partial_path, scratch_folder
from ..version import PLUGIN_ROOT
from .manifest import MANIFEST_NAME, Manifest, file_sha256, fingerprint, input_stamp, recorded_stamp
from .tiles import DEFAULT_TILE_SIZE, tile_layout, tile_size_for

gdal.UseExceptions()

SCHEDULER_SETTING = 'RSGEOCHEM_DASK_SCHEDULER'  # the provider setting (and environment variable)
CONNECT_TIMEOUT = '10s'
POLL_SECONDS = 0.2        # how often the cancel callable is asked while tasks run
REDUCE_FAN_IN = 8         # partial results combined per reduce task
TASK_RETRIES = 2          # re-runs of a task that raised (a dead worker's tasks are re-run anyway)
PACKAGE = __package__.split('.')[0]  # 'rsgeochem' (the plugin folder's name)
COG_OPTIONS = ('COMPRESS=DEFLATE', 'PREDICTOR=YES', 'BIGTIFF=IF_SAFER', 'NUM_THREADS=ALL_CPUS')


@dataclass
class ClusterRun:
    """How to run a step tile by tile.

    `scheduler`: a Dask scheduler address ("tcp://host:8786"), or None to run the tiles one after
    another in this process. `cog`: a .tif output becomes a Cloud Optimized GeoTIFF. `keep_tiles`:
    leave the tile folder next to a .tif output (a .vrt output always keeps it: it is the data).
    """
    scheduler: str | None = None
    tile_size: int = DEFAULT_TILE_SIZE
    cog: bool = False
    keep_tiles: bool = False
    progress: object = None
    cancel: object = None
    upload: bool = False  # send this plugin's core to the workers (Client.upload_file) before the run
    stats: dict = field(default_factory=dict)  # tiles, computed, skipped: summed over the steps run


def tiles_folder(output_path):
    """Where the tiles and the manifest of an output live: "<output without suffix>.tiles"."""
    path = Path(output_path)
    return path.with_name(f'{path.stem}.tiles')


def input_version(path):
    """input_stamp of an input; for the .vrt output of an earlier tiled run (e.g. the step before in
    a workflow) its manifest's record of the tiles, since its VRT file is rewritten on every run and
    its tiles only when their data change."""
    manifest = tiles_folder(path) / MANIFEST_NAME
    if Path(path).suffix.lower() == '.vrt' and manifest.is_file():
        return recorded_stamp(manifest)
    return input_stamp(path)


def tile_path(folder, key, tile):
    return Path(folder) / key / f'{tile.name}.tif'


def code_archive(folder):
    """A zip of the package's core (what workers run) to put on the workers' sys.path."""
    root = PLUGIN_ROOT
    archive = Path(folder) / 'rsgeochem_core.zip'
    with zipfile.ZipFile(archive, 'w', zipfile.ZIP_DEFLATED) as bundle:
        for path in [root / '__init__.py', root / 'metadata.txt', *sorted((root / 'core').rglob('*.py')),
                     *sorted((root / 'resources').glob('*.json'))]:
            bundle.write(path, Path(PACKAGE) / path.relative_to(root))
    return archive


def upload_code(client):
    """Send the core to the workers the way Client.upload_file does (its UploadFile worker plugin),
    under one plugin name, so a later run replaces the code instead of adding a copy, and not to
    the scheduler, which runs none of it: workers need only the core's dependencies installed."""
    plugins = require('distributed.diagnostics.plugin')
    with tempfile.TemporaryDirectory(prefix='rsgeochem-upload-') as folder:
        client.register_plugin(plugins.UploadFile(str(code_archive(folder))), name=f'{PACKAGE}-code')


@contextmanager
def connect(scheduler, upload=False):
    """A distributed.Client of the scheduler (our code uploaded when asked), or None for in-process
    runs."""
    if not scheduler:
        yield None
        return
    distributed = require('distributed')
    try:
        client = distributed.Client(scheduler, timeout=CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as error:
        raise InputError(f'cannot reach the Dask scheduler at "{scheduler}" ({error}); start it (e.g. '
                         '"dask scheduler") and its workers, or clear the "Dask scheduler address" '
                         'setting to run locally.', SCHEDULER_SETTING) from error
    try:
        if upload:
            upload_code(client)
        yield client
    finally:
        client.close()


def unreadable_paths(paths, folder):
    """Paths a worker cannot see (runs on each worker): inputs GDAL cannot stat, and the tile folder
    when it is not writable."""
    missing = [path for path in paths if gdal.VSIStatL(str(path)) is None]
    if folder is not None and not os.access(folder, os.W_OK):
        missing.append(str(folder))
    return missing


def check_visible(client, inputs, folder):
    """InputError naming the parameter of the first path some worker cannot see; `inputs` are
    (parameter key, path) pairs."""
    paths = [str(path) for _, path in inputs]
    try:
        answers = client.run(unreadable_paths, paths, folder and str(folder))
    except Exception as error:  # noqa: BLE001 - the workers' error arrives as a plain Exception
        if 'rsgeochem' not in str(error):
            raise
        raise InputError(f'the Dask workers cannot import rsgeochem ({error}); install it on every '
                         'worker (pip install of the plugin folder, see the README "Province scale") or '
                         'start the run with upload of the code.', SCHEDULER_SETTING) from error
    for worker, missing in sorted(answers.items()):
        if missing:
            key = next((k for k, path in inputs if str(path) == missing[0]), 'OUTPUT')
            raise InputError(
                f'the Dask worker {worker} cannot {"write to" if key == "OUTPUT" else "read"} '
                f'"{missing[0]}": a cluster run needs paths that every worker sees at the same name '
                '(a shared file system such as NFS mounted alike on every machine, or an object store '
                'through GDAL\'s /vsis3/, /vsigs/, /vsiaz/ paths for inputs).', key)


def tile_result(folder, files, **statistics):
    """What a task returns: its tile files (relative to the run folder) with their SHA-256, and its
    partial statistics (JSON-able)."""
    folder = Path(folder)
    return {'files': {key: [str(Path(path).relative_to(folder)), file_sha256(path)]
                      for key, path in files.items()}, **statistics}


def valid_pixels(path):
    """Pixels of a one-band tile file that are not nodata."""
    dataset = gdal.Open(str(path))
    band = dataset.GetRasterBand(1)
    values = band.ReadAsArray()
    valid = np.isfinite(values)
    if band.GetNoDataValue() is not None:
        valid &= values != band.GetNoDataValue()
    return int(np.count_nonzero(valid))


def gtiff_options(source):
    """Our GeoTIFF creation options with the user's (`creation_options`) for a copy of `source`."""
    dataset = gdal.Open(str(source))  # held: the band does not keep its dataset alive in GDAL ≥ 3.10
    return gtiff_creation_options(dataset.GetRasterBand(1).DataType)


def crop_to_tile(window_path, path, tile):
    """Copy a tile's own pixels out of a raster written over its read window (halo included)."""
    temporary = partial_path(path)
    try:
        gdal.Translate(str(temporary), str(window_path), srcWin=list(tile.own_window),
                       creationOptions=gtiff_options(window_path))
        os.replace(temporary, path)
    finally:
        remove_quietly(temporary)


@contextmanager
def halo_outputs(folder, tile, keys):
    """Paths a task writes over the tile's read window; on success each becomes the tile file of
    its key, cropped to the tile's own pixels (or moved, when the tile has no halo)."""
    if tile.own_window[:2] == (0, 0) and tile.read_window[2:] == tile.own_window[2:]:
        paths = {key: tile_path(folder, key, tile) for key in keys}
        for path in paths.values():
            path.parent.mkdir(parents=True, exist_ok=True)
        yield paths
        return
    with scratch_folder('rsgeochem-tile') as scratch:
        written = {key: Path(scratch) / f'{key}.tif' for key in keys}
        yield written
        for key, path in written.items():
            final = tile_path(folder, key, tile)
            final.parent.mkdir(parents=True, exist_ok=True)
            crop_to_tile(path, final, tile)


def write_tile(folder, tile, keys, write):
    """Call write({key: path}) to write the outputs over the tile's read window; returns ({key: tile
    file}, what write returned)."""
    with halo_outputs(folder, tile, keys) as paths:
        value = write(paths)
    return {key: tile_path(folder, key, tile) for key in keys}, value


def run_tile(task, tile, folder, parameters, options=()):
    """A task on a worker: `task` for one tile (tasks without outputs take no folder), writing with
    the client's GeoTIFF creation `options`."""
    relax_malloc_trim()
    with creation_options(options):
        return task(tile, parameters) if folder is None else task(tile, folder, parameters)


def run_tasks(client, task, tiles, manifest, parameters, run):
    """{tile name: result} of every tile: recorded ones reused, the others computed by
    task(tile, folder, parameters)."""
    results, todo = {}, []
    for tile in tiles:
        recorded = manifest.complete(tile.name)
        if recorded is None:
            todo.append(tile)
        else:
            results[tile.name] = recorded
    for key, count in (('tiles', len(tiles)), ('skipped', len(results)), ('computed', len(todo))):
        run.stats[key] = run.stats.get(key, 0) + count  # summed over the steps of a workflow

    def finished(name, result):
        manifest.record(name, result)
        results[name] = result
        if run.progress is not None:
            run.progress(len(results) / len(tiles))

    folder = str(manifest.folder)
    if client is None:
        for tile in todo:
            check_cancel(run.cancel)
            finished(tile.name, task(tile, folder, parameters))
        return results
    shared = client.scatter(parameters, broadcast=True, hash=False)  # sent once to each worker
    options = user_creation_options()   # QGIS's "Creation options" of the run, for the workers' tiles
    pending = {client.submit(run_tile, task, tile, folder, shared, options, retries=TASK_RETRIES,
                             key=f'{task.__name__}-{tile.name}-{manifest.fingerprint[:12]}'): tile.name
               for tile in todo}
    wait_for(client, pending, lambda future: finished(pending[future], future.result()), run.cancel)
    return results


def wait_for(client, futures, on_done, cancel):
    """Call on_done(future) as each future finishes, asking cancel() meanwhile; cancelled or failed,
    the unfinished futures are cancelled on the cluster."""
    distributed = require('distributed')
    pending = set(futures)
    completed = distributed.as_completed(list(pending), loop=client.loop)
    try:
        while pending:
            check_cancel(cancel)
            if not completed.has_ready():
                time.sleep(POLL_SECONDS)
                continue
            for future in completed.next_batch(block=False):
                pending.discard(future)
                on_done(future)
                check_cancel(cancel)
    finally:
        if pending:
            client.cancel(list(pending))


def reduce_tiles(run, task, combine, grid, parameters, inputs, fan_in=REDUCE_FAN_IN):
    """combine(*partials) of task(tile, parameters) over the tiles of `grid`: a global statistic
    (e.g. a histogram) from per-tile partial results. On a cluster the partials are combined on the
    workers in a tree of `fan_in` (only the total comes back); progress counts tiles."""
    tiles = tile_layout(grid, tile_size_for(run.tile_size))
    with connect(run.scheduler, run.upload) as client:
        if client is None:
            total = None
            for count, tile in enumerate(tiles, start=1):
                check_cancel(run.cancel)
                partial = task(tile, parameters)
                total = partial if total is None else combine(total, partial)
                if run.progress is not None:
                    run.progress(count / len(tiles))
            return total
        check_visible(client, inputs, None)
        shared = client.scatter(parameters, broadcast=True, hash=False)
        level = [client.submit(run_tile, task, tile, None, shared, retries=TASK_RETRIES, pure=False)
                 for tile in tiles]
        done = []

        def tile_done(future):
            if future.status == 'error':
                future.result()  # raises the task's error (a good partial stays on its worker)
            done.append(future)
            if run.progress is not None:
                run.progress(len(done) / len(tiles))
        wait_for(client, level, tile_done, run.cancel)
        while len(level) > 1:
            level = [client.submit(combine, *level[start:start + fan_in], pure=False)
                     for start in range(0, len(level), fan_in)]
        total = [None]
        wait_for(client, level, lambda future: total.__setitem__(0, future.result()), run.cancel)
        return total[0]


def assemble(folder, tiles, results, key, output_path, descriptions, cog=False):
    """Join a key's tile files into `output_path`: a VRT (.vrt, its tiles stay in the folder) or one
    GeoTIFF / COG (.tif) written under a temporary name and moved into place when complete."""
    output_path = Path(output_path)
    sources = [str(Path(folder) / results[tile.name]['files'][key][0]) for tile in tiles]
    as_vrt = output_path.suffix.lower() == '.vrt'
    vrt = (str(output_path.with_name(f'.{output_path.stem}.partial.vrt')) if as_vrt
           else f'/vsimem/rsgeochem-{os.getpid()}-{output_path.stem}.vrt')
    try:
        dataset = gdal.BuildVRT(vrt, sources)
        for index, description in enumerate(descriptions):
            dataset.GetRasterBand(index + 1).SetDescription(str(description))
        dataset = None
        if as_vrt:
            os.replace(vrt, output_path)
            return
        temporary = partial_path(output_path)
        try:
            gdal.Translate(str(temporary), vrt, format='COG' if cog else 'GTiff',
                           creationOptions=list(COG_OPTIONS) if cog else gtiff_options(vrt))
            os.replace(temporary, output_path)
        finally:
            remove_quietly(temporary)
    finally:
        if vrt.startswith('/vsimem/'):
            gdal.Unlink(vrt)
        else:
            remove_quietly(vrt)


def run_step(run, task, grid, parameters, inputs, outputs, description, halo=0, multiple=1, check=None,
             tiles=None):
    """Run `task` over the tiles of `grid` (`tiles`, or squares of the run's tile size with `halo`)
    and assemble its outputs; returns the tile results. `check(results)` may refuse the results
    (raise) before anything is assembled.

    `inputs` (parameter key, path) pairs are checked to be visible to the workers; `outputs` {key:
    (path, band descriptions)}; `description` (JSON-able, arrays allowed) identifies the parameters
    in the manifest's fingerprint together with the inputs' size and time stamps.
    """
    first_output = next(iter(outputs.values()))[0]
    folder = tiles_folder(first_output)
    size = tile_size_for(run.tile_size, multiple)
    tiles = tiles or tile_layout(grid, size, halo)
    versions = [[key, str(path), input_version(path)] for key, path in inputs]
    windows = [(tile.col, tile.row, tile.cols, tile.rows, *tile.read_window) for tile in tiles]
    run_fingerprint = fingerprint({'task': task.__name__, 'grid': grid, 'tiles': windows,
                                   'parameters': description, 'inputs': versions})
    manifest = Manifest(folder, run_fingerprint)
    with connect(run.scheduler, run.upload) as client:
        if client is not None:
            check_visible(client, inputs, folder)
        results = run_tasks(client, task, tiles, manifest, parameters, run)
    ordered = [results[tile.name] for tile in tiles]
    if check is not None:
        check(ordered)
    for key, (path, descriptions) in outputs.items():
        assemble(folder, tiles, results, key, path, descriptions, run.cog)
    if not run.keep_tiles and all(Path(path).suffix.lower() != '.vrt' for path, _ in outputs.values()):
        shutil.rmtree(folder, ignore_errors=True)
    return ordered

