"""`make demo`: both shipped workflows, headless with qgis_process, on the sample data set.

1. rsgeochem:rareearthinversion on the GF-2-like DN image, its XML and the SIMULATED RE2O3 samples;
2. rsgeochem:geochemfusion of the SIMULATED 250 m Cu survey with step 1's surface reflectance,
   then rsgeochem:accuracyassessment of the fused map at the 150 SIMULATED validation points;
3. the maps compared with the simulated truths (R², RMSE), figures and out/demo/index.html, which
   links the reports of the individual steps; a few figures are copied to docs/images/ for the
   README.

Everything is written under out/demo/ (removed and rebuilt on each run). Run from the checkout
root: .venv/bin/python scripts/demo.py [--out DIR] [--images DIR] [--iterations N]
"""
import argparse
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

from checkout_package import CHECKOUT, plugin_package  # scripts/ is on sys.path (the script's folder)

SAMPLE = CHECKOUT / 'resources' / 'sample'
OUT = CHECKOUT / 'out' / 'demo'
DOCS_IMAGES = CHECKOUT / 'docs' / 'images'
QGIS_PROCESS = '/usr/bin/qgis_process.bin'
TIMEOUT_SECONDS = 900

# GF-2 PMS1 2016 calibration and ESUN of the sample scene (resources/sample/PROVENANCE.md)
GAINS = '0.1322,0.155,0.1477,0.1613'
OFFSETS = '0,0,0,0'
ESUN = '1944.98,1854.42,1542.87,1080.97'
# The workflows run with their defaults, tuned on this data set and right in general (see
# scripts/make_workflows.py): CNN compared with the baselines (the best by test RMSE maps the image),
# anomaly areas of at least 2500 m², water = the published NDWI > 0 or NIR reflectance < 0.07. The
# Amazon's turbid water has NDWI just below 0 (NDWI > 0 masks only 70 % of the scene's water); NIR DOS1
# reflectance < 0.07 (= surface NIR 0.08, the sample data's water limit, through DOS1: 0.92 x surface -
# 0.004) masks all of it and 4 land pixels (checked on the demo's DOS1 output against
# resources/sample/gf2like_surface_reflectance.tif)
# %², the measurement-error variance of the SIMULATED RE2O3 samples (resources/sample/PROVENANCE.md),
# as a laboratory would state it from duplicate analyses
RE2O3_ERROR_VARIANCE = 0.3
CU_CELL_SIZE = 250  # m, the cell of the SIMULATED coarse Cu survey (simulated_cu_survey_250m.gpkg)

# figures of the report copied for the README (docs/images/<name>)
README_IMAGES = ('re2o3_maps.png', 're2o3_correlation.png', 're2o3_scatter.png', 're2o3_anomalies.png',
                 'cu_fusion_maps.png')


def qgis_process_env(plugin_path, profile):
    """As test/paths.py: the plugin through QGIS_PLUGINPATH, an isolated profile, the running venv's
    packages (wherever the venv lives and whatever its Python version)."""
    return dict(os.environ, QGIS_PLUGINPATH=str(plugin_path), QGIS_CUSTOM_CONFIG_PATH=str(profile),
                QT_QPA_PLATFORM='offscreen', GDAL_PAM_ENABLED='NO', PYTHONDONTWRITEBYTECODE='1',
                PYTHONPATH=sysconfig.get_path('purelib'))


def command_line(algorithm_id, parameters):
    return [QGIS_PROCESS, 'run', algorithm_id, '--', *(f'{key}={value}' for key, value in parameters.items())]


def run_streamed(arguments, env, log_path):
    """Run a command, copying its output to the console as it comes (progress dots included) and to
    a log file; raise with the log's path when it fails."""
    with open(log_path, 'wb') as log:
        process = subprocess.Popen(arguments, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        start = time.monotonic()
        while True:
            chunk = process.stdout.read1(4096)
            if not chunk:
                break
            log.write(chunk)
            sys.stdout.buffer.write(chunk)
            sys.stdout.flush()
            if time.monotonic() - start > TIMEOUT_SECONDS:
                process.kill()
                break
        code = process.wait()
    if code != 0:
        raise RuntimeError(f'{" ".join(arguments[:3])} failed (exit {code}); see {log_path}')


def rare_earth_parameters(folder, iterations):
    """Inputs and every output of rsgeochem:rareearthinversion for the sample data."""
    return {
        'IMAGE': SAMPLE / 'gf2like_pms1_dn.tif', 'METADATA': SAMPLE / 'gf2like_pms1_dn.xml',
        'SENSOR': 0, 'GAINS': GAINS, 'OFFSETS': OFFSETS, 'ESUN': ESUN,
        'SAMPLES': SAMPLE / 'simulated_re2o3_samples.gpkg', 'FIELD': 're2o3_pct', 'UNITS': '% RE2O3',
        'MEASUREMENT_ERROR': RE2O3_ERROR_VARIANCE, 'ITERATIONS': iterations,
        'darkobjectsubtraction:surface_reflectance': folder / 'surface_reflectance.tif',
        'darkobjectsubtraction:dos_report': folder / 'dark_object_report.html',
        'surfacemask:surface_mask': folder / 'surface_mask.tif',
        'kriging:kriged': folder / 'kriged_re2o3.tif',
        'kriging:kriging_variance': folder / 'kriging_variance.tif',
        'kriging:kriging_report': folder / 'kriging_report.html',
        'surfacesamples:surface_samples': folder / 'surface_samples.gpkg',
        'correlation:correlation_table': folder / 'correlation.csv',
        'correlation:correlation_report': folder / 'correlation_report.html',
        'traininversionmodel:inversion_model': folder / 're2o3_model.onnx',
        'traininversionmodel:training_report': folder / 'training_report.html',
        'applyinversionmodel:predicted_map': folder / 'predicted_re2o3.tif',
        'anomalies:anomaly_areas': folder / 'anomaly_areas.gpkg',
        'anomalies:anomaly_report': folder / 'anomaly_report.html',
        'accuracyassessment:predicted_at_samples': folder / 'predicted_at_samples.gpkg',
        'accuracyassessment:accuracy_report': folder / 'accuracy_at_samples_report.html',
        'kriging_predicted:kriged_predicted': folder / 'kriged_predicted_re2o3.tif',
        'comparemaps:map_difference': folder / 'kriged_predicted_minus_measured.tif',
        'comparemaps:map_comparison_report': folder / 'map_comparison_report.html',
    }


def fusion_parameters(folder, image):
    """Inputs and every output of rsgeochem:geochemfusion for the sample data."""
    return {
        'IMAGE': image, 'SAMPLES': SAMPLE / 'simulated_cu_survey_250m.gpkg', 'FIELD': 'cu_ppm',
        'CELL_SIZE': CU_CELL_SIZE, 'REFERENCE': SAMPLE / 'simulated_cu_truth.tif',
        'kriging:kriged_grid': folder / f'kriged_cu_{CU_CELL_SIZE}m.tif',
        'kriging:kriging_report': folder / 'kriging_report.html',
        'principalcomponents:components': folder / 'principal_components.tif',
        'principalcomponents:pca_report': folder / 'pca_report.html',
        'laplacianfusion:fused_map': folder / 'fused_cu.tif',
        'laplacianfusion:coefficients': folder / 'fusion_coefficients.csv',
        'laplacianfusion:fusion_report': folder / 'fusion_report.html',
        'anomalies:anomaly_areas': folder / 'anomaly_areas.gpkg',
        'anomalies:anomaly_report': folder / 'anomaly_report.html',
    }


def accuracy_parameters(folder, fused_map):
    return {'INPUT': fused_map, 'POINTS': SAMPLE / 'simulated_cu_validation.gpkg', 'FIELD': 'cu_ppm',
            'OUTPUT_HTML': folder / 'accuracy_report.html'}


def rare_earth_section(p, figures):
    """Report section of the inversion workflow from its outputs `p` (parameter -> path)."""
    import demo_report as dr
    truth = SAMPLE / 'simulated_re2o3_truth.tif'
    predicted, kriged = p['applyinversionmodel:predicted_map'], p['kriging:kriged']
    metrics, model_type = dr.model_metrics(p['traininversionmodel:inversion_model'])
    section = dr.Section(f'RE2O3 inversion (rsgeochem:rareearthinversion, best model by test RMSE: '
                         f'{model_type.upper()})', model_metrics=metrics)
    section.metrics = [dr.raster_agreement('predicted map', predicted, truth),
                       dr.raster_agreement('kriged map (baseline)', kriged, truth)]
    section.notes.append('Model rows: the train/test metrics the training step stored in the ONNX model '
                         '(target = kriged content at the samples, spatial-block split; the CNN and the '
                         'baselines are compared in the training report). Map rows: every valid pixel '
                         'compared with the simulated true field. The kriged map is the baseline the '
                         'image has to improve on. Water mask (the workflow\'s defaults): NDWI > 0 '
                         '(published) or NIR reflectance < 0.07 (turbid river water, which NDWI misses).')
    section.notes += dr.baseline_notes(section.metrics[0], section.metrics[1])
    # the paper's own check (its Fig. 10): the kriged predicted contents against the kriged measured map
    section.metrics.append(dr.Agreement.of(
        'kriged predicted map (paper\'s Fig. 10 check)', 'kriged measured map (pixels)',
        *dr.truth_pairs(p['kriging_predicted:kriged_predicted'], kriged)))
    section.notes.append(f'Kriging used a measurement-error variance of {RE2O3_ERROR_VARIANCE:g} %² (the '
                         'simulated samples\' analytical error): the kriged map is that of the error-free '
                         'content. The samples lie off their pixels\' centres, so the training target (the '
                         'kriged content at each sample\'s pixel) is smoothed, as on real data.')
    units = '% RE2O3'
    section.figures = [
        ('Predicted RE2O3, the simulated truth and the kriged samples',
         dr.maps_figure([(f'predicted ({model_type.upper()}, image)', predicted), ('simulated truth', truth),
                         ('kriged samples', kriged)], figures / 're2o3_maps.png', units)),
        ('Spearman correlation of the kriged content with the bands',
         dr.correlation_figure(p['correlation:correlation_table'], figures / 're2o3_correlation.png',
                               'RE2O3')),
        ('Predicted against the simulated truth (pixels)',
         dr.scatter_figure([('predicted map', *dr.truth_pairs(predicted, truth)),
                            ('kriged map', *dr.truth_pairs(kriged, truth))],
                           figures / 're2o3_scatter.png', units)),
        ('High-anomaly areas (concentration-area threshold) on the predicted map',
         dr.anomaly_figure(predicted, p['anomalies:anomaly_areas'], figures / 're2o3_anomalies.png',
                           'RE2O3', units)),
    ]
    section.links = [('Dark object subtraction', p['darkobjectsubtraction:dos_report']),
                     ('Kriging', p['kriging:kriging_report']),
                     ('Correlation', p['correlation:correlation_report']),
                     ('Model training (all metrics, loss, split map)',
                      p['traininversionmodel:training_report']),
                     ('Anomalies', p['anomalies:anomaly_report']),
                     ('Predicted against measured at the samples', p['accuracyassessment:accuracy_report']),
                     ('Kriged predicted against kriged measured map', p['comparemaps:map_comparison_report'])]
    return section


def fusion_section(p, accuracy, figures):
    import demo_report as dr
    truth = SAMPLE / 'simulated_cu_truth.tif'
    validation = SAMPLE / 'simulated_cu_validation.gpkg'
    fused, kriged = p['laplacianfusion:fused_map'], p['kriging:kriged_grid']
    section = dr.Section('Cu fusion (rsgeochem:geochemfusion, coherent mode, PC2)')
    section.metrics = [
        dr.raster_agreement('fused map', fused, truth),
        dr.raster_agreement('kriged 250 m grid, cubic (baseline)', kriged, truth, resample=True),
        dr.point_agreement('fused map', fused, validation, 'cu_ppm'),
        dr.point_agreement('kriged 250 m grid (baseline)', kriged, validation, 'cu_ppm'),
    ]
    section.notes.append('The baseline is the kriged 250 m grid alone (resampled by cubic convolution for '
                         'the pixel comparison): the fusion is worth its name where it beats it.')
    section.notes += dr.baseline_notes(section.metrics[0], section.metrics[1])
    units = 'Cu ppm'
    section.figures = [
        ('Kriged 250 m survey, fused map and the simulated truth',
         dr.maps_figure([('kriged 250 m grid', kriged), ('fused (grid + PC2)', fused),
                         ('simulated truth', truth)], figures / 'cu_fusion_maps.png', units)),
        ('Fused map against the simulated truth (pixels) and the validation points',
         dr.scatter_figure([('pixels', *dr.truth_pairs(fused, truth)),
                            ('150 validation points', *dr.point_pairs(fused, validation, 'cu_ppm'))],
                           figures / 'cu_scatter.png', units)),
        ('High-anomaly areas of the fused map',
         dr.anomaly_figure(fused, p['anomalies:anomaly_areas'], figures / 'cu_anomalies.png', 'Cu', units)),
    ]
    section.links = [('Kriging of the coarse survey', p['kriging:kriging_report']),
                     ('Principal components', p['principalcomponents:pca_report']),
                     ('Laplacian fusion (coefficients, reference check)', p['laplacianfusion:fusion_report']),
                     ('Accuracy at the validation points', accuracy['OUTPUT_HTML']),
                     ('Anomalies', p['anomalies:anomaly_report'])]
    return section


def main(argv=None):
    parser = argparse.ArgumentParser(description='Run both workflows on the sample data set.')
    parser.add_argument('--out', default=str(OUT), help='output folder (emptied first)')
    parser.add_argument('--images', default=str(DOCS_IMAGES),
                        help='folder for the README figures ("" to skip)')
    parser.add_argument('--iterations', type=int, default=5000, help='CNN iterations (paper: 5000)')
    args = parser.parse_args(argv)
    # temporary folders (the plugin package, the QGIS profile) are removed however the demo ends
    with plugin_package('rsgeochem-demo-') as plugin_path, \
            tempfile.TemporaryDirectory(prefix='rsgeochem-demo-profile-') as profile:
        return run_demo(args, plugin_path, Path(profile))


def run_demo(args, plugin_path, profile):
    started = time.monotonic()
    import demo_report as dr

    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    folders = {name: out / name for name in ('rareearth', 'fusion', 'figures', 'logs')}
    for folder in folders.values():
        folder.mkdir(parents=True)
    env = qgis_process_env(plugin_path, profile)
    subprocess.run([QGIS_PROCESS, 'plugins', 'enable', 'rsgeochem'], env=env, check=True,
                   capture_output=True, timeout=120)

    rare_earth = rare_earth_parameters(folders['rareearth'], args.iterations)
    fusion = fusion_parameters(folders['fusion'], rare_earth['darkobjectsubtraction:surface_reflectance'])
    accuracy = accuracy_parameters(folders['fusion'], fusion['laplacianfusion:fused_map'])
    runs = (('rsgeochem:rareearthinversion', rare_earth), ('rsgeochem:geochemfusion', fusion),
            ('rsgeochem:accuracyassessment', accuracy))
    commands = []
    for number, (algorithm_id, parameters) in enumerate(runs, start=1):
        print(f'\n=== [{number}/{len(runs)}] {algorithm_id} ===', flush=True)
        arguments = command_line(algorithm_id, parameters)
        commands.append(shlex.join(str(a) for a in arguments).replace(str(CHECKOUT) + '/', ''))
        run_streamed(arguments, env, folders['logs'] / f'{algorithm_id.split(":")[1]}.log')

    print('\n=== report ===', flush=True)
    sections = [rare_earth_section(rare_earth, folders['figures']),
                fusion_section(fusion, accuracy, folders['figures'])]
    index = dr.write_index(out / 'index.html', sections, commands, time.monotonic() - started)
    if args.images:
        images = Path(args.images)
        images.mkdir(parents=True, exist_ok=True)
        for name in README_IMAGES:
            shutil.copy(folders['figures'] / name, images / name)
    print('\n'.join(dr.summary_lines(sections, index)))
    print(f'Finished in {time.monotonic() - started:.0f} s.')
    return 0


if __name__ == '__main__':
    sys.exit(main())
