"""Exact neighbourhood Kriging: the 374 samples of resources/sample onto a 2000 x 2000 grid over
their extent, 32 nearest neighbours, prediction + variance written (one mode the prediction alone).

1. Speed (child processes, so peak RSS is each run's own; CPU and wall): our exact per-pixel mode
   (the default), the same without a variance output (prediction only, as the workflow's second
   Kriging), and our shared-block approximation, and with RSGEOCHEM_BENCH_BASELINE_PLUGIN
   (a folder holding another rsgeochem checkout, e.g. a `git archive` of main) the baseline in the
   same modes, alternated with ours (a baseline without a prediction-only path computes the
   variance it does not write).
2. Accuracy on a 64 x 64 window: exact against per-pixel Kriging of each pixel on its own
   (core.geostat.kriging.krige_points, float64) and against pykrige 1.7.3's C backend with the
   same 32 neighbours; the shared blocks against exact.
3. Inside QGIS: the rsgeochem:kriging algorithm on the same task through `qgis_process.bin run`
   and through processing.run in plain Python: the CPU ratio shows whether matrix products run at
   optimised-BLAS speed inside QGIS's executable (whose GSL reference CBLAS numpy binds to).

Environment: RSGEOCHEM_BENCH_KRIGING_EXACT_SIZE (grid side, default 2000).
"""
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CHECKOUT = Path(__file__).resolve().parent.parent
SAMPLES = CHECKOUT / 'resources' / 'sample' / 'simulated_re2o3_samples.gpkg'
FIELD = 're2o3_pct'
SIZE = int(os.environ.get('RSGEOCHEM_BENCH_KRIGING_EXACT_SIZE', '2000'))
BASELINE_PLUGIN = os.environ.get('RSGEOCHEM_BENCH_BASELINE_PLUGIN', '')
NEIGHBOURS = 32
MODEL = {'name': 'exponential', 'nugget': 3.27522, 'psill': 3.81278, 'range': 10423.5}
WINDOW = 64
QGIS_PROCESS = '/usr/bin/qgis_process.bin'


def read_samples():
    from osgeo import ogr
    source = ogr.Open(str(SAMPLES))  # kept alive while its layer is read
    layer = source.GetLayer()
    rows = [(f.GetGeometryRef().GetX(), f.GetGeometryRef().GetY(), f.GetField(FIELD)) for f in layer]
    return tuple(np.array(column) for column in zip(*rows))


def grid_of(size):
    """(x0, pixel width, y0, pixel height) of a size x size grid over the samples' extent."""
    x, y, _ = read_samples()
    return (float(x.min()), (x.max() - x.min()) / size, float(y.max()), (y.max() - y.min()) / size)


def block_side(x, y, pixel):
    """Shared-block side near main's former automatic choice (a third of the mean sample spacing),
    but at least 2 so that the bench always measures shared blocks (the former rule fell back to
    per-pixel neighbourhoods below 2)."""
    spacing = np.sqrt(np.ptp(x) * np.ptp(y) / len(x))
    return int(min(max(spacing / (3 * pixel), 2), 64))


def child(out_dir, block_pixels, variance=True):
    """In a child process with the plugin on sys.path: krige_grid at full size, prints JSON."""
    import resource

    from rsgeochem.core.geostat.kriging import prepare_samples
    from rsgeochem.core.geostat.kriging_grid import krige_grid
    from rsgeochem.core.geostat.variogram import VariogramModel
    from rsgeochem.core.raster.blockio import Grid
    x0, dx, y0, dy = grid_of(SIZE)
    grid = Grid(SIZE, SIZE, (x0, dx, 0.0, y0, 0.0, -dy), '')
    samples = prepare_samples(*read_samples())
    wall, cpu = time.perf_counter(), time.process_time()
    summary = krige_grid(samples, VariogramModel(**MODEL), grid, Path(out_dir) / 'p.tif',
                         Path(out_dir) / 'v.tif' if variance else None, n_neighbours=NEIGHBOURS,
                         block_pixels=block_pixels)
    print(json.dumps({'wall': time.perf_counter() - wall, 'cpu': time.process_time() - cpu,
                      'mode': summary.mode,
                      'peak_mib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}))


def run_child(plugin_parent, out_dir, block_pixels, variance=True):
    out_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(plugin_parent), os.environ.get('PYTHONPATH', '')]))
    arguments = [sys.executable, __file__, 'child', str(out_dir), str(block_pixels), str(int(variance))]
    result = subprocess.run(arguments, env=env, check=True, capture_output=True, text=True)
    run = json.loads(result.stdout.strip().splitlines()[-1])
    run['mpix_per_s'] = round(SIZE * SIZE / 1e6 / run['wall'], 3)
    run['mpix_per_cpu_s'] = round(SIZE * SIZE / 1e6 / run['cpu'], 3)
    return {key: round(value, 2) if isinstance(value, float) else value for key, value in run.items()}


def window_values(path):
    from osgeo import gdal
    start = SIZE // 2 - WINDOW // 2
    return gdal.Open(str(path)).ReadAsArray(start, start, WINDOW, WINDOW).astype(np.float64)


def accuracy(exact_dir, blocks_dir):
    from pykrige.ok import OrdinaryKriging

    from rsgeochem.core.geostat.kriging import krige_points, prepare_samples
    from rsgeochem.core.geostat.variogram import VariogramModel
    x, y, z = read_samples()
    x0, dx, y0, dy = grid_of(SIZE)
    start = SIZE // 2 - WINDOW // 2
    xs = x0 + dx * (start + np.arange(WINDOW) + 0.5)
    ys = y0 - dy * (start + np.arange(WINDOW) + 0.5)
    px, py = np.meshgrid(xs, ys)
    reference, _ = krige_points(prepare_samples(x, y, z), VariogramModel(**MODEL), px.ravel(), py.ravel(),
                                n_neighbours=NEIGHBOURS)
    theirs = OrdinaryKriging(x, y, z, variogram_model=MODEL['name'], variogram_parameters={
        key: MODEL[key] for key in ('psill', 'range', 'nugget')})
    pykrige_prediction, _ = theirs.execute('grid', xs, ys, backend='C', n_closest_points=NEIGHBOURS)
    exact, blocks = window_values(exact_dir / 'p.tif'), window_values(blocks_dir / 'p.tif')

    def largest(a, b):
        return float(np.max(np.abs(np.asarray(a).ravel() - np.asarray(b).ravel())))
    return {'exact_vs_each_pixel_alone_max_abs (float32 file)': largest(exact, reference),
            'exact_vs_pykrige_C_max_abs': largest(exact, pykrige_prediction),
            'blocks_vs_exact_max_abs': largest(blocks, exact),
            'blocks_vs_exact_mean_abs': float(np.mean(np.abs(blocks - exact))),
            'prediction_sd_on_window': float(np.std(exact))}


def reference_raster(path):
    from osgeo import gdal, osr
    from osgeo import ogr as _ogr
    source = _ogr.Open(str(SAMPLES))
    srs = source.GetLayer().GetSpatialRef()
    x0, dx, y0, dy = grid_of(SIZE)
    dataset = gdal.GetDriverByName('GTiff').Create(str(path), SIZE, SIZE, 1, gdal.GDT_Byte, ['TILED=YES'])
    dataset.SetGeoTransform((x0, dx, 0.0, y0, 0.0, -dy))
    dataset.SetProjection(srs.ExportToWkt() if srs else osr.SpatialReference().ExportToWkt())
    dataset = None


def algorithm_parameters(reference, out_dir):
    return {'INPUT': str(SAMPLES), 'FIELD': FIELD, 'REFERENCE_RASTER': str(reference), 'GRID_EXTENT': 1,
            'VARIOGRAM_MODEL': MODEL['name'], 'NUGGET': MODEL['nugget'], 'SILL': MODEL['psill'],
            'RANGE': MODEL['range'], 'N_NEIGHBOURS': NEIGHBOURS, 'OUTPUT': str(out_dir / 'p.tif'),
            'OUTPUT_VARIANCE': str(out_dir / 'v.tif')}


PLAIN_PYTHON = '''
import json, sys
from qgis.core import QgsApplication
app = QgsApplication([], False); app.initQgis()
sys.path.append('/usr/share/qgis/python/plugins')
from processing.core.Processing import Processing
Processing.initialize()
from rsgeochem.algorithms.glue.provider import RsGeochemProvider
provider = RsGeochemProvider(); QgsApplication.processingRegistry().addProvider(provider)
import processing
processing.run('rsgeochem:kriging', json.loads(sys.argv[1]))
'''


def cpu_of(arguments, env):
    started = time.perf_counter()
    process = subprocess.Popen(arguments, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f'{arguments[:3]} failed: {process.stderr.read().decode()[-2000:]}')
    return {'wall': round(time.perf_counter() - started, 2), 'cpu': round(usage.ru_utime + usage.ru_stime, 2)}


def inside_qgis(work_dir, plugin_parent):
    """CPU of rsgeochem:kriging through qgis_process.bin and through processing.run in plain Python."""
    work_dir.mkdir(parents=True)
    reference = work_dir / 'reference.tif'
    reference_raster(reference)
    version = f'python{sys.version_info.major}.{sys.version_info.minor}'
    venv_site = str(CHECKOUT / '.venv' / 'lib' / version / 'site-packages')
    env = dict(os.environ, QGIS_PLUGINPATH=str(plugin_parent), QT_QPA_PLATFORM='offscreen',
               QGIS_CUSTOM_CONFIG_PATH=str(work_dir / 'profile'), GDAL_PAM_ENABLED='NO',
               PYTHONPATH=os.pathsep.join([venv_site, str(plugin_parent)]))
    subprocess.run([QGIS_PROCESS, 'plugins', 'enable', 'rsgeochem'], env=env, capture_output=True)
    runs = {'qgis_process': [], 'plain_python': []}
    for index in range(2):
        out = work_dir / f'alg{index}'
        out.mkdir()
        parameters = algorithm_parameters(reference, out)
        runs['qgis_process'].append(cpu_of([QGIS_PROCESS, 'run', 'rsgeochem:kriging', '--',
                                            *(f'{k}={v}' for k, v in parameters.items())], env))
        runs['plain_python'].append(cpu_of(['/usr/bin/python3', '-c', PLAIN_PYTHON, json.dumps(parameters)],
                                           env))
    best = {name: min(values, key=lambda run: run['cpu']) for name, values in runs.items()}
    return dict(best, ratio_cpu_qgis_process_over_plain=round(best['qgis_process']['cpu'] /
                                                              best['plain_python']['cpu'], 2))


def run(work_dir):
    work_dir = Path(work_dir)
    ours = Path(tempfile.mkdtemp(prefix='rsgeochem-bench-plugin-'))
    (ours / 'rsgeochem').symlink_to(CHECKOUT, target_is_directory=True)
    x, y, _ = read_samples()
    side = block_side(x, y, grid_of(SIZE)[1])
    plugins = {'ours': ours, **({'baseline': Path(BASELINE_PLUGIN)} if BASELINE_PLUGIN else {})}
    # NEIGHBOURHOOD_BLOCK 0 = exact (the default), side = shared blocks; with or without variance
    modes = {'exact': (0, True), 'exact_prediction_only': (0, False), f'blocks_{side}px': (side, True)}
    result = {'task': f'374 samples -> {SIZE}x{SIZE}, {NEIGHBOURS} neighbours, prediction + variance '
                    '(exact_prediction_only: prediction alone)',
              'cores': os.cpu_count()}
    for mode, (block, variance) in modes.items():
        for name, plugin in plugins.items():
            result[f'{name}_{mode}'] = run_child(plugin, work_dir / f'{name}_{mode}', block, variance)
    result['accuracy'] = accuracy(work_dir / 'ours_exact', work_dir / f'ours_blocks_{side}px')
    if BASELINE_PLUGIN:
        for mode in modes:
            result[f'ratio_cpu_{mode}_ours_over_baseline'] = round(
                result[f'ours_{mode}']['cpu'] / result[f'baseline_{mode}']['cpu'], 3)
    result['ratio_cpu_blocks_over_exact'] = round(
        result[f'ours_blocks_{side}px']['cpu'] / result['ours_exact']['cpu'], 3)
    result['inside_qgis'] = {name: inside_qgis(work_dir / f'qgis_{name}', plugin)
                             for name, plugin in plugins.items()}
    return result


if __name__ == '__main__' and len(sys.argv) == 5 and sys.argv[1] == 'child':
    child(sys.argv[2], int(sys.argv[3]), bool(int(sys.argv[4])))
