"""Kriging speed: 2,500 samples onto a 5000 x 5000 grid, prediction + variance, 32 nearest neighbours.

Ours: core.geostat.kriging_grid.krige_grid (shared-neighbourhood pixel blocks, GeoTIFF outputs written),
run in a child process so its peak memory (ru_maxrss) is its own. Baseline: pykrige 1.7.3
OrdinaryKriging.execute('grid', n_closest_points=...) with the C and loop backends (its fastest
for neighbourhood Kriging) timed on two sub-grids in the same run (set-up and per-pixel cost, in
its best BLAS thread setting) and scaled to the full grid; pykrige's vectorized backend (global
Kriging only) is timed too. Wall and CPU times are both reported: on a shared machine the CPU
ratio is the steadier one. Accuracy: on a window, the block result
and the per-pixel-neighbourhood result are compared with global Kriging (all 2,500 samples).

Environment: RSGEOCHEM_BENCH_KRIGING_SIZE (grid side, default 5000) and
RSGEOCHEM_BENCH_KRIGING_NEIGHBOURS (default 32) allow quicker runs.
"""
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SIZE = int(os.environ.get('RSGEOCHEM_BENCH_KRIGING_SIZE', '5000'))
NEIGHBOURS = int(os.environ.get('RSGEOCHEM_BENCH_KRIGING_NEIGHBOURS', '32'))
N_SAMPLES = 2500
EXTENT = 50_000.0  # metres; 2,500 samples -> mean spacing 1 km = 100 px of 10 m at SIZE 5000
MODEL = {'name': 'spherical', 'nugget': 0.1, 'psill': 1.0, 'range': 10_000.0}
PYKRIGE_WINDOW = (160, 96)    # columns, rows of pykrige's timed sub-grid (neighbourhood backends)
VECTORIZED_WINDOW = (80, 40)   # its global vectorized backend holds (pixels x samples) arrays
ACCURACY_WINDOW = 64          # side of the window compared with global Kriging
OUR_RUNS = 2                  # ours is timed this many times (best kept); pykrige's best thread setting


def samples():
    """Synthetic smooth field plus noise at uniform random locations (fixed seed)."""
    rng = np.random.default_rng(20240601)
    x, y = rng.uniform(0, EXTENT, N_SAMPLES), rng.uniform(0, EXTENT, N_SAMPLES)
    z = np.sin(x / 7000.0) + np.cos(y / 5000.0) + 0.3 * rng.normal(size=N_SAMPLES)
    return x, y, z


def grid(size):
    from osgeo import osr

    from rsgeochem.core.raster.blockio import Grid
    crs = osr.SpatialReference()
    crs.ImportFromEPSG(32632)
    pixel = EXTENT / size
    return Grid(size, size, (0.0, pixel, 0.0, EXTENT, 0.0, -pixel), crs.ExportToWkt())


def window_grid(full, col, row, cols, rows):
    x0, dx, _, y0, _, dy = full.geotransform
    return type(full)(cols, rows, (x0 + col * dx, dx, 0.0, y0 + row * dy, 0.0, dy), full.crs_wkt)


def krige(out_dir, grid_, n_neighbours, block_pixels=0):
    """Our grid Kriging; returns (seconds, summary)."""
    from rsgeochem.core.geostat.kriging import prepare_samples
    from rsgeochem.core.geostat.kriging_grid import krige_grid
    from rsgeochem.core.geostat.variogram import VariogramModel
    model = VariogramModel(**MODEL)
    started = time.perf_counter()
    summary = krige_grid(prepare_samples(*samples()), model, grid_, Path(out_dir) / 'prediction.tif',
                         Path(out_dir) / 'variance.tif', n_neighbours=n_neighbours, block_pixels=block_pixels)
    return time.perf_counter() - started, summary


def child(out_dir):
    """Entry point of the child process: full-size Kriging, prints JSON."""
    cpu = time.process_time()
    seconds, summary = krige(out_dir, grid(SIZE), NEIGHBOURS)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({'seconds': seconds, 'cpu_seconds': time.process_time() - cpu, 'peak_mib': peak_mib,
                      'block_pixels': summary.block_pixels, 'nodata_pixels': summary.nodata_pixels}))


def run_ours(work_dir):
    """Best of OUR_RUNS child runs (the machine is shared), with the largest peak memory."""
    import rsgeochem
    package_parent = str(Path(rsgeochem.__file__).parent.parent)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([package_parent, os.environ.get('PYTHONPATH', '')]))
    runs = []
    for _ in range(OUR_RUNS):
        result = subprocess.run([sys.executable, __file__, 'child', str(work_dir)], env=env, check=True,
                                capture_output=True, text=True)
        runs.append(json.loads(result.stdout.strip().splitlines()[-1]))
    best = min(runs, key=lambda run: run['seconds'])
    return dict(best, peak_mib=max(run['peak_mib'] for run in runs),
                all_seconds=[run['seconds'] for run in runs])


def pixel_centres(grid_, col, row, cols, rows):
    x0, dx, _, y0, _, dy = grid_.geotransform
    return x0 + dx * (col + np.arange(cols) + 0.5), y0 + dy * (row + np.arange(rows) + 0.5)


def timed(function, *args, **kwargs):
    """(wall seconds, CPU seconds of this process, result) of a call."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = function(*args, **kwargs)
    return time.perf_counter() - wall, time.process_time() - cpu, result


def time_pykrige(grid_, col, row):
    """pykrige's cost per pixel (wall and CPU) per backend in its best BLAS thread setting: a large
    window's time less the fixed set-up (execute() builds the full samples matrix on every call),
    timed on a 2 x 2 window; and its C-backend result on the large window."""
    from pykrige.ok import OrdinaryKriging
    from threadpoolctl import threadpool_limits
    x, y, z = samples()
    parameters = {'psill': MODEL['psill'], 'range': MODEL['range'], 'nugget': MODEL['nugget']}
    kriging = OrdinaryKriging(x, y, z, variogram_model=MODEL['name'], variogram_parameters=parameters)
    costs, result = {}, None
    for backend, (cols, rows), extra in (('C', PYKRIGE_WINDOW, {'n_closest_points': NEIGHBOURS}),
                                         ('loop', PYKRIGE_WINDOW, {'n_closest_points': NEIGHBOURS}),
                                         ('vectorized (global)', VECTORIZED_WINDOW, {})):
        name = backend.split()[0]
        for threads in (None, 1):
            with threadpool_limits(threads):
                tiny = pixel_centres(grid_, col, row, 2, 2)
                setups = [timed(kriging.execute, 'grid', *tiny, backend=name, **extra)[:2] for _ in range(2)]
                setup = min(setups, key=lambda times: times[0])
                xs, ys = pixel_centres(grid_, col, row, cols, rows)
                wall, cpu, output = timed(kriging.execute, 'grid', xs, ys, backend=name, **extra)
            if backend == 'C' and result is None:
                result = output
            cost = {'wall_per_pixel': max(wall - setup[0], 0.5 * wall) / (cols * rows),
                    'cpu_per_pixel': max(cpu - setup[1], 0.5 * cpu) / (cols * rows),
                    'wall_setup': setup[0], 'cpu_setup': setup[1], 'blas_threads': threads or 'default'}
            if backend not in costs or cost['wall_per_pixel'] < costs[backend]['wall_per_pixel']:
                costs[backend] = cost
    return costs, np.asarray(result[0]), np.asarray(result[1])


def read(path, col=0, row=0, cols=None, rows=None):
    from osgeo import gdal
    dataset = gdal.Open(str(path))
    return dataset.ReadAsArray(col, row, cols, rows).astype(np.float64)


def differences(a, b):
    return {'max_abs': float(np.max(np.abs(a - b))), 'mean_abs': float(np.mean(np.abs(a - b)))}


def accuracy(work_dir, full_grid, col, row):
    """Block and per-pixel neighbourhood results against global Kriging on a window."""
    side = ACCURACY_WINDOW
    window = window_grid(full_grid, col, row, side, side)
    results = {}
    for name, neighbours, block in (('global', 0, 0), ('per_pixel', NEIGHBOURS, 1)):
        folder = Path(work_dir) / name
        krige(folder, window, neighbours, block)
        results[name] = (read(folder / 'prediction.tif'), np.sqrt(read(folder / 'variance.tif')))
    results['blocks'] = (read(Path(work_dir) / 'full' / 'prediction.tif', col, row, side, side),
                         np.sqrt(read(Path(work_dir) / 'full' / 'variance.tif', col, row, side, side)))
    data_sd = float(np.std(samples()[2]))
    report = {'window_pixels': side * side, 'data_sd': data_sd}
    for name in ('blocks', 'per_pixel'):
        report[f'{name}_vs_global_prediction'] = differences(results[name][0], results['global'][0])
        report[f'{name}_vs_global_kriging_sd'] = differences(results[name][1], results['global'][1])
    report['blocks_vs_per_pixel_prediction'] = differences(results['blocks'][0], results['per_pixel'][0])
    return report, results['per_pixel']


def run(work_dir):
    full_grid = grid(SIZE)
    ours = run_ours(Path(work_dir) / 'full')
    col, row = SIZE // 2 - 100, SIZE // 2 - 75
    costs, pykrige_prediction, _ = time_pykrige(full_grid, col, row)
    pixels = SIZE * SIZE
    scaled = {backend: {'wall': cost['wall_setup'] + cost['wall_per_pixel'] * pixels,
                        'cpu': cost['cpu_setup'] + cost['cpu_per_pixel'] * pixels}
              for backend, cost in costs.items()}
    fastest = min(('C', 'loop'), key=lambda backend: scaled[backend]['wall'])
    report, per_pixel = accuracy(work_dir, full_grid, col, row)
    side = ACCURACY_WINDOW
    # the same task check: our per-pixel neighbourhood result against pykrige's (ties aside)
    report['per_pixel_vs_pykrige_C_prediction'] = differences(per_pixel[0], pykrige_prediction[:side, :side])
    return {
        'task': f'{N_SAMPLES} samples -> {SIZE}x{SIZE} grid, prediction + variance, {NEIGHBOURS} neighbours, '
                f'{MODEL["name"]} model',
        'ours_seconds': round(ours['seconds'], 2),
        'ours_seconds_all_runs': [round(seconds, 2) for seconds in ours['all_seconds']],
        'ours_cpu_seconds': round(ours['cpu_seconds'], 2),
        'ours_mpix_per_s': round(pixels / ours['seconds'] / 1e6, 3),
        'ours_peak_mib': round(ours['peak_mib'], 1),
        'ours_block_pixels': ours['block_pixels'],
        'pykrige_fastest_backend': f'{fastest} (BLAS threads {costs[fastest]["blas_threads"]})',
        'pykrige_mpix_per_s': {backend: round(1e-6 / cost['wall_per_pixel'], 4)
                               for backend, cost in costs.items()},
        'pykrige_seconds_scaled': round(scaled[fastest]['wall'], 1),
        'pykrige_cpu_seconds_scaled': round(scaled[fastest]['cpu'], 1),
        'ratio': round(scaled[fastest]['wall'] / ours['seconds'], 1),
        'ratio_cpu': round(scaled[fastest]['cpu'] / ours['cpu_seconds'], 1),
        'accuracy': report,
    }


if __name__ == '__main__' and len(sys.argv) == 3 and sys.argv[1] == 'child':
    child(sys.argv[2])
