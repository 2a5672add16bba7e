"""laplacianfusion on a large scene through `qgis_process.bin run`, side by side with Orfeo ToolBox:
an N x N four-band guide image (mirror-tiled from the real Sentinel-2 scene; N = 8000 by default,
RSGEOCHEM_BENCH_FUSION_SIZE=20000 for the wide-image case of issue 13, WIDTHxHEIGHT for a strip as in
bench_large) and its coarse grid, 4 times coarser.

* ours: the algorithm's defaults, with the default block budget (256 MB) and with 2048 MB (speed
  and memory must not depend on it), each output's size against the same data written in one go;
* OTB: `otbcli_Superimpose` (the grid onto the guide's grid, bicubic) then `otbcli_Pansharpening
  -method rcs` with the first guide band as the pan image, as the issue measured it (skipped with a
  message where OTB is not installed: Debian package otb-bin); its two runs' wall and CPU seconds
  summed, its peak the larger one.

Wall, CPU seconds and peak RSS are each process's own (bench/measure.py); on a loaded machine
trust CPU seconds and the ratios. With RSGEOCHEM_BENCH_BASELINE_PLUGIN=<folder holding another
rsgeochem checkout> that plugin runs the default case too, for before/after ratios.
"""
import glob
import os
import shutil
from pathlib import Path

from bench_fusion import _large_inputs
from bench_large import (
    BASELINE_PLUGIN,
    CHECKOUT,
    PEAK_GOAL_MIB,
    QGIS_PROCESS,
    output_sizes,
    qgis_process_env,
    scene_size,
)
from measure import run_measured

WIDTH, HEIGHT = scene_size(os.environ.get('RSGEOCHEM_BENCH_FUSION_SIZE', '8000'))
BUDGETS_MB = (256, 2048)


def ours(plugin_parent, guides, coarse, out_dir, budget_mb):
    out_dir.mkdir()
    env = qgis_process_env(plugin_parent, out_dir)
    output = out_dir / 'fused.tif'
    parameters = {'INPUT_GEOCHEM': coarse, 'INPUT_IMAGE': guides, 'BLOCK_MEMORY_MB': budget_mb,
                  'OUTPUT': output}
    wall, cpu, peak, _ = run_measured([QGIS_PROCESS, 'run', 'rsgeochem:laplacianfusion', '--',
                                       *(f'{key}={value}' for key, value in parameters.items())], env)
    return dict(wall=round(wall, 1), cpu=round(cpu, 1), peak_mib=peak, **output_sizes(output, out_dir))


def otb_launcher():
    """(launcher, environment) running an OTB application in this process's child itself (the
    otbcli_* scripts start it as a grandchild, whose peak memory measure.py would not see), or
    None where OTB is not installed."""
    launcher = shutil.which('otbApplicationLauncherCommandLine')
    applications = glob.glob('/usr/lib/*/otb/applications')
    if not launcher or not applications:
        return None
    return launcher, dict(os.environ, OTB_APPLICATION_PATH=applications[0], LC_NUMERIC='C')


def otb(guides, coarse, work):
    """Superimpose + Pansharpening rcs; the pan image is the first guide band."""
    launcher, env = otb_launcher()
    pan, superimposed = work / 'otb_pan.tif', work / 'otb_superimposed.tif'
    run_measured(['gdal_translate', '-q', '-b', '1', guides, str(pan)], env)
    steps = {'superimpose': ['Superimpose', '-inr', pan, '-inm', coarse, '-out', superimposed, 'float'],
             'pansharpening': ['Pansharpening', '-inp', pan, '-inxs', superimposed, '-out',
                               work / 'otb_fused.tif', 'float', '-method', 'rcs']}
    result = {}
    for name, arguments in steps.items():
        wall, cpu, peak, _ = run_measured([launcher, *map(str, arguments)], env)
        result[name] = dict(wall=round(wall, 1), cpu=round(cpu, 1), peak_mib=peak)
    runs = list(result.values())
    result.update({key: round(sum(run[key] for run in runs), 1) for key in ('wall', 'cpu')},
                  peak_mib=max(run['peak_mib'] for run in runs))
    return result


def run(work_dir):
    work = Path(work_dir)
    _, guides, coarse = _large_inputs(work, HEIGHT, WIDTH)
    result = {'scene': f'{WIDTH}x{HEIGHT}x4 guide, {WIDTH // 4}x{HEIGHT // 4} grid',
              'peak_goal_mib': PEAK_GOAL_MIB}
    plugin = work / 'plugin'
    plugin.mkdir()
    (plugin / 'rsgeochem').symlink_to(CHECKOUT, target_is_directory=True)
    for budget in BUDGETS_MB:
        result[f'ours_{budget}mb'] = ours(plugin, guides, coarse, work / f'ours_{budget}', budget)
    default, large = (result[f'ours_{budget}mb'] for budget in BUDGETS_MB)
    ratios = {'cpu_default_over_2048mb_budget': round(default['cpu'] / large['cpu'], 2)}
    if BASELINE_PLUGIN:
        baseline = ours(Path(BASELINE_PLUGIN), guides, coarse, work / 'baseline', BUDGETS_MB[0])
        result['baseline_256mb'] = baseline
        ratios['cpu_ours_over_baseline'] = round(default['cpu'] / baseline['cpu'], 2)
    if otb_launcher():
        result['otb_superimpose_pansharpening_rcs'] = peer = otb(guides, coarse, work)
        ratios.update({f'{key}_ours_over_otb': round(default[key] / peer[key], 2)
                       for key in ('wall', 'cpu', 'peak_mib')})
    else:
        result['otb'] = 'skipped: otbApplicationLauncherCommandLine not installed (Debian package otb-bin)'
    result['ratio'] = ratios
    return result
