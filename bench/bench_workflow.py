"""The full-scene rareearthinversion workflow: a GF-2-sized scene (7300 x 6900 px, 4 bands, built by
mirror-tiling resources/sample/gf2like_pms1_dn.tif) and the 374 sample points, run headless with
`qgis_process.bin run rsgeochem:rareearthinversion`, with wall and CPU seconds per step and the
peak RSS of the whole run.

Per step: the qgis_process log announces each child algorithm ("Prepare algorithm: <id>") and its
end ("OK. Execution took ..."); the process's CPU time (/proc/<pid>/stat, every thread) and its
peak RSS so far (VmHWM) are read as each line arrives; the run's peak RSS is its VmHWM
(bench/measure.py).

Baselines, run in the same bench run so the machine's load cancels out: a fixed yardstick
(gdal_translate of the scene to a DEFLATE GeoTIFF) always, and with
RSGEOCHEM_BENCH_BASELINE_PLUGIN=<folder holding another rsgeochem checkout> that plugin on the
same scene, alternated with ours (e.g. a `git archive` of main, to compare before/after).

Environment: RSGEOCHEM_BENCH_WORKFLOW_SIZE=<cols>x<rows> (default 7300x6900),
RSGEOCHEM_BENCH_WORKFLOW_RUNS (runs of each plugin, default 1).
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from measure import cpu_seconds, peak_mib, run_measured

CHECKOUT = Path(__file__).resolve().parent.parent
SAMPLE = CHECKOUT / 'resources' / 'sample'
QGIS_PROCESS = '/usr/bin/qgis_process.bin'
SIZE = tuple(int(v) for v in os.environ.get('RSGEOCHEM_BENCH_WORKFLOW_SIZE', '7300x6900').split('x'))
RUNS = int(os.environ.get('RSGEOCHEM_BENCH_WORKFLOW_RUNS', '1'))
BASELINE_PLUGIN = os.environ.get('RSGEOCHEM_BENCH_BASELINE_PLUGIN', '')
GOALS = {'wall_seconds': 60.0, 'cpu_seconds': 50.0, 'peak_mib': 800.0}
BUILD_ROWS = 512


def mirror_index(size, tile):
    """Source index of each of `size` positions when a `tile`-long axis is repeated, every other copy
    mirrored (so the scene has no seams)."""
    position = np.arange(size)
    copy, offset = np.divmod(position, tile)
    return np.where(copy % 2 == 1, tile - 1 - offset, offset)


def build_scene(path, cols, rows):
    """The sample scene mirror-tiled to cols x rows, same origin, pixel size, CRS and data type."""
    from osgeo import gdal
    source = gdal.Open(str(SAMPLE / 'gf2like_pms1_dn.tif'))
    data = source.ReadAsArray()
    bands = data.shape[0]
    col_index = mirror_index(cols, data.shape[2])
    row_index = mirror_index(rows, data.shape[1])
    target = gdal.GetDriverByName('GTiff').Create(
        str(path), cols, rows, bands, source.GetRasterBand(1).DataType,
        ['TILED=YES', 'COMPRESS=DEFLATE', 'PREDICTOR=2', 'BIGTIFF=IF_SAFER'])
    target.SetGeoTransform(source.GetGeoTransform())
    target.SetProjection(source.GetProjection())
    for row in range(0, rows, BUILD_ROWS):
        block = data[:, row_index[row:row + BUILD_ROWS]][:, :, col_index]
        for band in range(bands):
            target.GetRasterBand(band + 1).WriteArray(block[band], 0, row)
    target = None
    shutil.copy(SAMPLE / 'gf2like_pms1_dn.xml', path.with_suffix('.xml'))


def parameters(scene, folder):
    """Inputs as `make demo` gives them (scripts/demo.py), the workflow's default model (the CNN)."""
    sys.path.insert(0, str(CHECKOUT / 'scripts'))
    import demo
    values = demo.rare_earth_parameters(folder, 5000)
    values.update(IMAGE=scene, METADATA=scene.with_suffix('.xml'), MODEL=0)
    del values['ITERATIONS']  # the workflow's default
    return values


def run_timed(arguments, env, log_path):
    """Run a command; (wall s, CPU s, peak MiB, per-step {child id: {wall, cpu, peak so far}})."""
    steps, current = {}, [None]

    def on_line(line, pid):
        begin = re.search(r'Prepare algorithm: (\S+)', line)
        if begin or 'Execution took' in line:
            now, cpu = time.perf_counter(), cpu_seconds(pid)
            if current[0] is not None and 'Execution took' in line:
                steps[current[0]] = {'wall': round(now - steps[current[0]]['wall'], 2),
                                     'cpu': round(cpu - steps[current[0]]['cpu'], 2),
                                     'peak_mib_so_far': peak_mib(pid)}
                current[0] = None
            if begin:
                current[0] = begin.group(1)
                steps[current[0]] = {'wall': now, 'cpu': cpu}
    wall, cpu, peak, lines = run_measured(arguments, env, on_line)
    Path(log_path).write_text(''.join(lines))
    return wall, cpu, peak, steps


def run_workflow(plugin_parent, scene, folder):
    """One workflow run of the rsgeochem plugin in `plugin_parent` (the folder holding `rsgeochem/`)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    profile = folder / 'profile'
    version = f'python{sys.version_info.major}.{sys.version_info.minor}'
    env = dict(os.environ, QGIS_PLUGINPATH=str(plugin_parent), QGIS_CUSTOM_CONFIG_PATH=str(profile),
               QT_QPA_PLATFORM='offscreen', GDAL_PAM_ENABLED='NO', PYTHONDONTWRITEBYTECODE='1',
               PYTHONPATH=str(CHECKOUT / '.venv' / 'lib' / version / 'site-packages'))
    subprocess.run([QGIS_PROCESS, 'plugins', 'enable', 'rsgeochem'], env=env, check=True,
                   capture_output=True)
    arguments = ['stdbuf', '-o0', QGIS_PROCESS, '--verbose', 'run', 'rsgeochem:rareearthinversion', '--',
                 *(f'{key}={value}' for key, value in parameters(scene, folder / 'out').items())]
    wall, cpu, peak, steps = run_timed(arguments, env, folder / 'log.txt')
    shutil.rmtree(folder / 'out', ignore_errors=True)
    return {'wall_seconds': round(wall, 1), 'cpu_seconds': round(cpu, 1), 'peak_mib': round(peak),
            'steps': steps}


def yardstick(scene, work_dir):
    """gdal_translate of the scene to a DEFLATE GeoTIFF: (wall s, CPU s) of a fixed task."""
    started, before = time.perf_counter(), os.times()
    subprocess.run(['gdal_translate', '-q', '-co', 'TILED=YES', '-co', 'COMPRESS=DEFLATE', str(scene),
                    str(work_dir / 'yardstick.tif')], check=True)
    after = os.times()
    (work_dir / 'yardstick.tif').unlink()
    return (time.perf_counter() - started,
            after.children_user - before.children_user + after.children_system - before.children_system)


def best(runs):
    return min(runs, key=lambda run: run['wall_seconds'])


def run(work_dir):
    cols, rows = SIZE
    scene = Path(work_dir) / 'scene' / 'gf2_scene_dn.tif'
    scene.parent.mkdir()
    build_scene(scene, cols, rows)
    plugins = {'ours': Path(tempfile.mkdtemp(prefix='rsgeochem-bench-plugin-'))}
    (plugins['ours'] / 'rsgeochem').symlink_to(CHECKOUT, target_is_directory=True)
    if BASELINE_PLUGIN:
        plugins['baseline'] = Path(BASELINE_PLUGIN)
    runs = {name: [] for name in plugins}
    yard_wall, yard_cpu = yardstick(scene, Path(work_dir))
    for index in range(RUNS):
        for name, plugin in plugins.items():  # alternated: load drifts hit both alike
            runs[name].append(run_workflow(plugin, scene, Path(work_dir) / f'{name}{index}'))
    result = {'scene': f'{cols}x{rows}x4 UInt16, 374 samples, CNN (workflow defaults)',
              'goals': GOALS, 'yardstick_gdal_translate': {'wall': round(yard_wall, 1),
                                                          'cpu': round(yard_cpu, 1)}}
    for name, name_runs in runs.items():
        result[name] = dict(best(name_runs), all_wall_seconds=[r['wall_seconds'] for r in name_runs])
        result[f'{name}_cpu_over_yardstick'] = round(result[name]['cpu_seconds'] / yard_cpu, 2)
    if 'baseline' in result:
        result['ratio_wall_ours_over_baseline'] = round(
            result['ours']['wall_seconds'] / result['baseline']['wall_seconds'], 2)
        result['ratio_cpu_ours_over_baseline'] = round(
            result['ours']['cpu_seconds'] / result['baseline']['cpu_seconds'], 2)
    result['goals_met'] = {key: result['ours'][key] <= goal for key, goal in GOALS.items()}
    return result
