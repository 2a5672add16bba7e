"""Large rasters: peak RSS, time and output size of raster algorithms on an N x N x 4 float32
scene (default 8000; RSGEOCHEM_BENCH_LARGE_SIZE=20000 for the 20000² case, ~1 h), through
`qgis_process.bin run`, with GDAL's default cache and with GDAL_CACHEMAX=64. A size WIDTHxHEIGHT
(e.g. 20000x2048) gives a strip of the same width in minutes: what a block holds per row of tiles
grows with the width only, so the peaks of the per-pixel steps are those of the full scene.

The input is a smooth synthetic reflectance scene (ZSTD, so it costs little disk). Each output is
compared with the same data written in one go (gdal_translate with the same creation options, our
ZSTD level included): tiles written in parts would make the file grow. Peak RSS is each run's own
VmHWM (bench/measure.py).
With RSGEOCHEM_BENCH_BASELINE_PLUGIN=<folder holding another rsgeochem checkout> that plugin runs
the same cases, alternated with ours.
"""
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from measure import run_measured

from rsgeochem.core.raster.blockio import GTIFF_OPTIONS

CHECKOUT = Path(__file__).resolve().parent.parent
QGIS_PROCESS = '/usr/bin/qgis_process.bin'


def scene_size(text):
    """(width, height) of 'N' (a square) or 'WIDTHxHEIGHT'."""
    sides = [int(side) for side in text.lower().split('x')]
    return sides[0], sides[-1]


WIDTH, HEIGHT = scene_size(os.environ.get('RSGEOCHEM_BENCH_LARGE_SIZE', '8000'))
BASELINE_PLUGIN = os.environ.get('RSGEOCHEM_BENCH_BASELINE_PLUGIN', '')
PEAK_GOAL_MIB = 800
SCENE, MODEL = '{scene}', '{model}'   # stand-ins for the scene's and the ONNX model's paths
CASES = {  # algorithm id -> parameters besides INPUT (file names are written in the case's folder)
    'spectralindices': {'SENSOR': 3, 'OUTPUT': 'out.tif'},
    'darkobjectsubtraction': {'METHOD': 0, 'OUTPUT': 'out.tif'},
    'surfacemask': {'OUTPUT': 'out.tif'},
    'principalcomponents': {'OUTPUT': 'out.tif', 'OUTPUT_HTML': 'report.html'},
    'applyinversionmodel': {'MODEL': MODEL, 'OUTPUT': 'out.tif'},
    'anomalies': {'OUTPUT': 'areas.gpkg', 'OUTPUT_HTML': 'report.html'},
    'comparemaps': {'REFERENCE': SCENE, 'REFERENCE_BAND': 2, 'OUTPUT': 'out.tif',
                    'OUTPUT_HTML': 'report.html'},
}
CACHES = {'default cache': None, 'GDAL_CACHEMAX=64': '64'}
# RSGEOCHEM_BENCH_LARGE_CASES=<id>,<id>: only these; RSGEOCHEM_BENCH_LARGE_CACHES=default: only the
# default cache (the 20000² case takes hours with every case twice)
SELECTED = [name for name in os.environ.get('RSGEOCHEM_BENCH_LARGE_CASES', '').split(',') if name] or \
    list(CASES)
if os.environ.get('RSGEOCHEM_BENCH_LARGE_CACHES') == 'default':
    CACHES = {'default cache': None}


def scene(path, width, height=None):
    """Smooth 4-band reflectance (0.02-0.5) with a little noise, written in tile rows; `height`
    None for a square."""
    height = height or width
    from osgeo import gdal, osr
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32650)
    dataset = gdal.GetDriverByName('GTiff').Create(
        str(path), width, height, 4, gdal.GDT_Float32,
        ['TILED=YES', 'COMPRESS=ZSTD', 'PREDICTOR=3', 'BIGTIFF=YES', 'NUM_THREADS=2'])
    dataset.SetGeoTransform((500000.0, 4.0, 0.0, 3000000.0, 0.0, -4.0))
    dataset.SetProjection(srs.ExportToWkt())
    rng = np.random.default_rng(0)
    cols = np.arange(width) / width
    for row in range(0, height, 256):
        rows = np.arange(row, min(row + 256, height))[:, None] / height
        for band in range(4):
            values = 0.2 + 0.1 * np.sin(6 * cols + band) * np.cos(5 * rows) + 0.02 * band
            values = values + rng.normal(0, 0.002, values.shape)
            dataset.GetRasterBand(band + 1).WriteArray(values.astype(np.float32), 0, row)
    dataset = None


def paper_cnn(path):
    """The paper-shaped CNN of bench_apply.py (4 features, random weights) as an ONNX file."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_apply import paper_cnn as write_cnn
    return write_cnn(path)


def qgis_process_env(plugin_parent, out_dir, cache=None):
    """Environment of a qgis_process.bin run with the plugin in `plugin_parent` enabled in a profile
    of its own under `out_dir`; `cache` a GDAL_CACHEMAX value, None for GDAL's default."""
    version = f'python{sys.version_info.major}.{sys.version_info.minor}'
    env = dict(os.environ, QGIS_PLUGINPATH=str(plugin_parent), QT_QPA_PLATFORM='offscreen',
               QGIS_CUSTOM_CONFIG_PATH=str(out_dir / 'profile'), GDAL_PAM_ENABLED='NO',
               PYTHONPATH=str(CHECKOUT / '.venv' / 'lib' / version / 'site-packages'))
    env.pop('GDAL_CACHEMAX', None)
    if cache:
        env['GDAL_CACHEMAX'] = cache
    subprocess.run([QGIS_PROCESS, 'plugins', 'enable', 'rsgeochem'], env=env, capture_output=True)
    return env


def run_case(plugin_parent, algorithm, source, model, out_dir, cache):
    env = qgis_process_env(plugin_parent, out_dir, cache)
    stand_ins = {SCENE: source, MODEL: model}
    parameters = {'INPUT': source, **{key: stand_ins.get(value) or (out_dir / value if isinstance(value, str)
                                                                   and '.' in value else value)
                                      for key, value in CASES[algorithm].items()}}
    wall, cpu, peak, _ = run_measured([QGIS_PROCESS, 'run', f'rsgeochem:{algorithm}', '--',
                                       *(f'{k}={v}' for k, v in parameters.items())], env)
    result = {'wall': round(wall, 1), 'cpu': round(cpu, 1), 'peak_mib': peak}
    output = Path(parameters['OUTPUT'])
    if output.suffix == '.tif':
        result.update(output_sizes(output, out_dir))
    for path in out_dir.iterdir():
        if path.is_file():
            path.unlink()
    return result


def output_sizes(output, out_dir):
    """Size of `output` and of the same data written in one go (gdal_translate with the same
    structure); both files are deleted afterwards."""
    once = out_dir / 'once.tif'
    options = [part for item in structure_options(output) for part in ('-co', item)]
    subprocess.run(['gdal_translate', '-q', *options, str(output), str(once)], check=True)
    result = {'output_mb': round(output.stat().st_size / 1e6, 1),
              'same_data_in_one_go_mb': round(once.stat().st_size / 1e6, 1)}
    output.unlink()
    once.unlink()
    return result


def structure_options(path):
    """Creation options that rebuild `path`'s layout: tiles, interleaving, compression, predictor,
    and the ZSTD level of our writer (a file does not record it; gdal_translate's default level 9
    makes files 1-4 % smaller than level 1 does, whichever way they were written)."""
    from osgeo import gdal
    dataset = gdal.Open(str(path))
    structure = dataset.GetMetadata('IMAGE_STRUCTURE')
    width, height = dataset.GetRasterBand(1).GetBlockSize()
    options = ['TILED=YES', f'BLOCKXSIZE={width}', f'BLOCKYSIZE={height}', 'BIGTIFF=IF_SAFER']
    if structure.get('COMPRESSION'):
        options.append(f"COMPRESS={structure['COMPRESSION']}")
    if structure.get('PREDICTOR'):
        options.append(f"PREDICTOR={structure['PREDICTOR']}")
    if structure.get('INTERLEAVE'):
        options.append(f"INTERLEAVE={structure['INTERLEAVE']}")
    if structure.get('COMPRESSION') == 'ZSTD':
        options += [option for option in GTIFF_OPTIONS if option.startswith('ZSTD_LEVEL=')]
    return options


def run(work_dir):
    work_dir = Path(work_dir)
    source = work_dir / 'scene.tif'
    scene(source, WIDTH, HEIGHT)
    model = paper_cnn(work_dir / 'cnn.onnx')
    ours = Path(tempfile.mkdtemp(prefix='rsgeochem-bench-plugin-'))
    (ours / 'rsgeochem').symlink_to(CHECKOUT, target_is_directory=True)
    plugins = {'ours': ours, **({'baseline': Path(BASELINE_PLUGIN)} if BASELINE_PLUGIN else {})}
    result = {'scene': f'{WIDTH}x{HEIGHT}x4 float32', 'peak_goal_mib': PEAK_GOAL_MIB}
    for algorithm in SELECTED:
        for cache_name, cache in CACHES.items():
            case = result.setdefault(algorithm, {}).setdefault(cache_name, {})
            for name, plugin in plugins.items():
                out_dir = work_dir / f'{algorithm}-{name}-{cache or "default"}'
                out_dir.mkdir()
                case[name] = run_case(plugin, algorithm, source, model, out_dir, cache)
            if 'baseline' in case:
                case['ratio_cpu_ours_over_baseline'] = round(case['ours']['cpu'] / case['baseline']['cpu'], 2)
    return result
