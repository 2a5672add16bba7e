"""Province-scale overhead: applyinversionmodel and kriging on a full GF-2 scene (7300 x 6900 x 4,
the sample image mirror-tiled) run locally (the algorithms' own path: onnxruntime / kriging on
both cores) and tile by tile on a Dask LocalCluster of 1 and of 2 single-threaded worker
processes (core.distributed.steps, .vrt output so no final copy), in one run. The ratio is the
cluster time over the local time; the outputs are checked to be identical. CPU seconds (this
process's threads locally; the workers' processes and this client on a cluster) are given too:
on a machine shared with other jobs the wall times say little, the CPU a run spends does.

Environment: RSGEOCHEM_BENCH_SCENE="7300x6900" (columns x rows) allows quicker runs.
"""
import importlib
import os
import resource
import time

import numpy as np
from osgeo import gdal

from rsgeochem.core.distributed import steps
from rsgeochem.core.distributed.runner import ClusterRun
from rsgeochem.core.geostat.kriging import prepare_samples
from rsgeochem.core.geostat.kriging_grid import krige_grid
from rsgeochem.core.geostat.variogram import VariogramModel
from rsgeochem.core.inversion.inference import apply_model
from rsgeochem.core.raster.blockio import Grid, RasterReader, RasterWriter, Window, raster_info
from rsgeochem.core.version import PLUGIN_ROOT

SCENE = tuple(int(v) for v in os.environ.get('RSGEOCHEM_BENCH_SCENE', '7300x6900').split('x'))
SAMPLE = PLUGIN_ROOT / 'resources' / 'sample' / 'gf2like_surface_reflectance.tif'
MODEL = PLUGIN_ROOT / 'models' / 're2o3_cnn_gf2.onnx'
N_SAMPLES, NEIGHBOURS = 2500, 32        # as bench_kriging: ~1 sample per 140 x 140 pixels
VARIOGRAM = VariogramModel('spherical', 0.1, 1.0, 10_000.0)
ROWS_PER_WRITE = 512
WARM_IMPORTS = ('onnxruntime', 'onnx', 'rsgeochem.core.distributed.steps')


def mirrored(count, period):
    """Indices 0..count-1 folded into 0..period-1 by mirroring (0 1 .. n-1 n-1 .. 1 0 0 1 ..)."""
    index = np.arange(count) % (2 * period)
    return np.where(index < period, index, 2 * period - 1 - index)


def full_scene(path):
    """The sample image mirror-tiled to SCENE pixels, same pixel size, band descriptions kept."""
    info = raster_info(SAMPLE)
    source = RasterReader(SAMPLE, None).read(Window(0, info.grid.height)).data.astype(np.float32)
    x0, dx, _, y0, _, dy = info.grid.geotransform
    grid = Grid(SCENE[0], SCENE[1], (x0, dx, 0.0, y0, 0.0, dy), info.grid.crs_wkt)
    columns = mirrored(SCENE[0], info.grid.width)
    with RasterWriter(path, grid, info.band_count, descriptions=info.descriptions) as writer:
        for row in range(0, SCENE[1], ROWS_PER_WRITE):
            rows = mirrored(min(row + ROWS_PER_WRITE, SCENE[1]), info.grid.height)[row:]
            writer.write(row, source[:, rows][:, :, columns])
    return str(path), grid


def kriging_samples(grid):
    rng = np.random.default_rng(20240601)
    width, height = grid.width * grid.pixel_width, grid.height * grid.pixel_height
    x = grid.geotransform[0] + rng.uniform(0, width, N_SAMPLES)
    y = grid.geotransform[3] - rng.uniform(0, height, N_SAMPLES)
    return prepare_samples(x, y, np.sin(x / 7000.0) + np.cos(y / 5000.0) + 0.3 * rng.normal(size=N_SAMPLES))


def timed(function, *args):
    started = time.perf_counter()
    function(*args)
    return round(time.perf_counter() - started, 2)


def process_cpu_seconds():
    """User + system CPU seconds of this process, all its threads (runs on each worker too)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cpu_timed(function, *args, client=None):
    """(wall seconds, CPU seconds) of function(*args): this process's CPU, plus the workers' when a
    client is given."""
    def total():
        workers = sum(client.run(process_cpu_seconds).values()) if client is not None else 0.0
        return workers + process_cpu_seconds()
    before = total()
    seconds = timed(function, *args)
    return seconds, round(total() - before, 2)


def load_average():
    """The machine's 1-minute load average (other jobs on the 2 cores make the ratios noisy)."""
    return round(os.getloadavg()[0], 2)


def identical(a, b):
    return bool(np.array_equal(gdal.Open(str(a)).ReadAsArray(), gdal.Open(str(b)).ReadAsArray()))


def run(work_dir):
    import distributed
    scene, grid = full_scene(work_dir / 'scene.tif')
    samples = kriging_samples(grid)
    jobs = {
        'applyinversionmodel': (
            lambda out: apply_model(scene, MODEL, out),
            lambda run, out: steps.infer(run, scene, MODEL, out)),
        'kriging': (
            lambda out: krige_grid(samples, VARIOGRAM, grid, out, None, None, NEIGHBOURS),
            lambda run, out: steps.krige(run, samples, VARIOGRAM, grid, out, None, (), NEIGHBOURS)),
    }
    result = {'scene': f'{SCENE[0]} x {SCENE[1]} x 4', 'cores': os.cpu_count(),
              'kriging': f'{N_SAMPLES} samples, {NEIGHBOURS} neighbours, prediction only'}
    for name, (local, tiled) in jobs.items():
        numbers = {'load_before_local': load_average()}
        local_seconds = cpu_timed(local, work_dir / f'{name}_local.tif')
        numbers['local_seconds'], numbers['local_cpu_seconds'] = local_seconds
        for workers in (1, 2):
            with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                          dashboard_address=':0') as cluster, \
                    distributed.Client(cluster) as client:
                for module in WARM_IMPORTS:  # a long-lived cluster's workers have imported these
                    client.run(importlib.import_module, module)
                out = work_dir / f'{name}_{workers}w.vrt'
                run_on = ClusterRun(cluster.scheduler_address)
                numbers[f'load_before_workers_{workers}'] = load_average()
                numbers[f'workers_{workers}_seconds'], numbers[f'workers_{workers}_cpu_seconds'] = cpu_timed(
                    tiled, run_on, out, client=client)
                numbers[f'workers_{workers}_identical'] = identical(work_dir / f'{name}_local.tif', out)
        numbers['ratio_2_workers'] = round(numbers['workers_2_seconds'] / numbers['local_seconds'], 3)
        numbers['ratio_1_worker'] = round(numbers['workers_1_seconds'] / numbers['local_seconds'], 3)
        for workers in (1, 2):
            numbers[f'cpu_ratio_{workers}_worker{"s" if workers > 1 else ""}'] = round(
                numbers[f'workers_{workers}_cpu_seconds'] / numbers['local_cpu_seconds'], 3)
        result[name] = numbers
    result['ratio'] = result['applyinversionmodel']['ratio_2_workers']
    result['load_after'] = load_average()
    return result
