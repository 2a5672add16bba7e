"""core/distributed: each covered step run tile by tile on a LocalCluster of 2 worker processes
gives the local path's output bit for bit, also after a worker is killed mid-run and after an
interrupted run is restarted; paths the workers cannot see give an error naming the parameter."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from osgeo import gdal

from factories import make_grid, write_test_raster
from paths import CHECKOUT, PLUGIN_PATH
from rsgeochem.core.anomalies import areas
from rsgeochem.core.anomalies.fractal import concentration_area
from rsgeochem.core.distributed import fusion as distributed_fusion
from rsgeochem.core.distributed import steps
from rsgeochem.core.distributed.__main__ import main as cli_main
from rsgeochem.core.distributed.inputs import calibration_coefficients, kriging_inputs
from rsgeochem.core.distributed.manifest import MANIFEST_NAME
from rsgeochem.core.distributed.runner import ClusterRun, tiles_folder
from rsgeochem.core.distributed.workflow import RareEarthSettings, rare_earth_workflow
from rsgeochem.core.errors import CancelledError, InputError
from rsgeochem.core.fusion import pipeline
from rsgeochem.core.fusion.pipeline import FusionSettings
from rsgeochem.core.geostat.kriging import fit_for_samples, prepare_samples
from rsgeochem.core.geostat.kriging_grid import DriftRasters, krige_grid
from rsgeochem.core.geostat.variogram import VariogramModel
from rsgeochem.core.imagery import indices
from rsgeochem.core.imagery.calibration import calibrate_raster
from rsgeochem.core.imagery.darkobject import dark_objects, path_reflectance, read_histogram, subtract_raster
from rsgeochem.core.imagery.mask import PolygonBurner, write_surface_mask
from rsgeochem.core.inversion.inference import apply_model
from rsgeochem.core.raster.blockio import Grid, creation_options, raster_info, write_raster

distributed = pytest.importorskip('distributed')
onnx = pytest.importorskip('onnx')
pytest.importorskip('onnxruntime')

SAMPLE = CHECKOUT / 'resources' / 'sample'
DN = str(SAMPLE / 'gf2like_pms1_dn.tif')
REFLECTANCE = str(SAMPLE / 'gf2like_surface_reflectance.tif')
CNN = str(CHECKOUT / 'models' / 're2o3_cnn_gf2.onnx')
TILE = 64  # 16 tiles on the 243 x 233 sample image
GAINS, OFFSETS = np.array([0.1322, 0.155, 0.1477, 0.1613]), np.array([0.0, 0.0, 0.0, 0.0])


@pytest.fixture(scope='module')
def scheduler():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=':0') as cluster:
        yield cluster.scheduler_address


def pixels(path):
    return gdal.Open(str(path)).ReadAsArray()


def assert_identical(local, tiled):
    a, b = pixels(local), pixels(tiled)
    assert a.shape == b.shape
    assert np.array_equal(a, b, equal_nan=True)  # bit for bit: the same core code on the same pixels
    info_a, info_b = raster_info(local), raster_info(tiled)
    assert info_a.grid.same_as(info_b.grid)
    assert info_a.descriptions == info_b.descriptions and info_a.nodata == info_b.nodata


def patch_max_model(path, n_features=4, k=3):
    """y = max over the bands and the k x k neighbourhood of input (N, F, k, k): needs a halo."""
    helper = onnx.helper
    graph = helper.make_graph(
        [helper.make_node('ReduceMax', ['x'], ['m'], axes=[1, 2, 3], keepdims=0),
         helper.make_node('Unsqueeze', ['m', 'axis'], ['y'])], 'patch',
        [helper.make_tensor_value_info('x', onnx.TensorProto.FLOAT, ['N', n_features, k, k])],
        [helper.make_tensor_value_info('y', onnx.TensorProto.FLOAT, ['N', 1])],
        [onnx.numpy_helper.from_array(np.array([1], np.int64), 'axis')])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return str(path)


def test_calibration_and_indices_match_local(tmp_path, scheduler):
    descriptions = ['B1', 'B2', 'B3', 'B4']
    calibrate_raster(DN, tmp_path / 'local.tif', GAINS, OFFSETS, descriptions)
    steps.calibrate(ClusterRun(scheduler, TILE), DN, tmp_path / 'tiled.vrt', GAINS, OFFSETS, descriptions)
    assert_identical(tmp_path / 'local.tif', tmp_path / 'tiled.vrt')

    info = raster_info(REFLECTANCE)
    sensor = indices.load_table()[0]['gf2']
    lookup, _ = indices.band_lookup(sensor, info.band_count, info.descriptions)
    chosen, _ = indices.select_indices(sensor, [], lookup, info.band_count)
    local = indices.write_indices(REFLECTANCE, chosen, lookup, info.band_count, tmp_path / 'ix_local.tif')
    run = ClusterRun(scheduler, TILE)
    tiled = steps.indices(run, REFLECTANCE, tmp_path / 'ix_tiled.tif', chosen, lookup, info.band_count)
    assert_identical(tmp_path / 'ix_local.tif', tmp_path / 'ix_tiled.tif')
    np.testing.assert_array_equal(local, tiled)
    assert run.stats == {'tiles': 16, 'skipped': 0, 'computed': 16}
    assert not tiles_folder(tmp_path / 'ix_tiled.tif').exists()  # a .tif output keeps no tiles


def test_dark_object_histogram_is_tree_reduced_and_subtraction_matches_local(tmp_path, scheduler):
    run = ClusterRun(scheduler, TILE)
    local = read_histogram(REFLECTANCE)
    np.testing.assert_array_equal(steps.dark_histogram(run, REFLECTANCE).counts, local.counts)
    objects = dark_objects(local, 1000, 0.01)
    path_values = [path_reflectance(obj.value, 1.0) for obj in objects]
    subtract_raster(REFLECTANCE, tmp_path / 'local.tif', path_values, 1.0, ['b', 'g', 'r', 'n'])
    steps.dark_subtract(run, REFLECTANCE, tmp_path / 'tiled.vrt', path_values, 1.0, ['b', 'g', 'r', 'n'])
    assert_identical(tmp_path / 'local.tif', tmp_path / 'tiled.vrt')
    # in this process, without a cluster, the partial histograms are merged one by one
    np.testing.assert_array_equal(steps.dark_histogram(ClusterRun(None, TILE), REFLECTANCE).counts,
                                  local.counts)


def test_surface_mask_with_polygons_matches_local(tmp_path, scheduler):
    grid = raster_info(REFLECTANCE).grid
    xmin, ymin, xmax, ymax = grid.extent
    x0, y0, x1, y1 = xmin + 0.3 * (xmax - xmin), ymin + 0.2 * (ymax - ymin), xmax - 100.0, ymax - 900.0
    burner = PolygonBurner([f'POLYGON(({x0} {y0},{x1} {y0},{x1} {y1},{x0} {y0}))'], grid.crs_wkt)
    bands = {'red': 3, 'nir': 4, 'green': 2}
    thresholds = {'ndvi_threshold': 0.3, 'ndwi_threshold': 0.0, 'nir_water_threshold': 0.05}
    local = write_surface_mask(REFLECTANCE, tmp_path / 'local.tif', bands, thresholds, burner)
    tiled = steps.surface_mask(ClusterRun(scheduler, TILE), REFLECTANCE, tmp_path / 'tiled.tif', bands,
                               thresholds, burner)
    assert_identical(tmp_path / 'local.tif', tmp_path / 'tiled.tif')
    assert tiled == local and 0 < local.polygons < local.valid and local.vegetation > 0


def test_anomaly_threshold_statistics_are_tree_reduced(tmp_path, scheduler):
    content = str(tmp_path / 'content.tif')
    apply_model(REFLECTANCE, CNN, content)
    keep = str(tmp_path / 'keep.tif')
    write_surface_mask(REFLECTANCE, keep, {'red': 3, 'nir': 4, 'green': 2}, {'ndvi_threshold': 0.3})
    source = areas.ValueSource(content, 1, keep)
    local = areas.raster_statistics(source, 500)
    tiled = steps.anomaly_statistics(ClusterRun(scheduler, TILE), source, 500)
    assert (tiled.count, tiled.minimum, tiled.maximum) == (local.count, local.minimum, local.maximum)
    np.testing.assert_array_equal(tiled.counts, local.counts)
    np.testing.assert_array_equal(tiled.log_counts, local.log_counts)
    # the partial moments are combined in another order: equal to rounding
    np.testing.assert_allclose([tiled.mean, tiled.sd], [local.mean, local.sd], rtol=1e-12)
    assert areas.median_mad_threshold(tiled, 2.0) == areas.median_mad_threshold(local, 2.0)
    assert areas.percentile_threshold(tiled, 95.0) == areas.percentile_threshold(local, 95.0)


@pytest.mark.parametrize('model', ['cnn', 'patch'])
def test_inversion_model_matches_local(tmp_path, scheduler, model):
    model_path = CNN if model == 'cnn' else patch_max_model(tmp_path / 'patch.onnx')
    bands = None if model == 'cnn' else [1, 2, 3, 4]
    local = apply_model(REFLECTANCE, model_path, tmp_path / 'local.tif', bands)
    tiled = steps.infer(ClusterRun(scheduler, TILE), REFLECTANCE, model_path, tmp_path / 'tiled.vrt', bands)
    assert_identical(tmp_path / 'local.tif', tmp_path / 'tiled.vrt')
    assert (tiled.predicted, tiled.nodata) == (local.predicted, local.nodata)


def kriging_samples(grid, n=120):
    rng = np.random.default_rng(7)
    x = grid.geotransform[0] + rng.uniform(0, grid.width * grid.pixel_width, n)
    y = grid.geotransform[3] - rng.uniform(0, grid.height * grid.pixel_height, n)
    return prepare_samples(x, y, np.sin(x / 300.0) + np.cos(y / 200.0) + rng.normal(0, 0.1, n))


# global, exact per pixel (0 and 1), shared blocks of 5 pixels (64-pixel tiles become 65)
@pytest.mark.parametrize('n_neighbours, block_pixels', [(0, 0), (16, 0), (16, 1), (16, 5)])
def test_kriging_matches_local(tmp_path, scheduler, n_neighbours, block_pixels):
    grid = raster_info(REFLECTANCE).grid
    samples, model = kriging_samples(grid), VariogramModel('spherical', 0.01, 1.0, 800.0)
    local = krige_grid(samples, model, grid, tmp_path / 'p.tif', tmp_path / 'v.tif', None, n_neighbours,
                       0.0, block_pixels)
    tiled = steps.krige(ClusterRun(scheduler, TILE), samples, model, grid, tmp_path / 'tp.vrt',
                        tmp_path / 'tv.vrt', (), n_neighbours, 0.0, block_pixels)
    assert_identical(tmp_path / 'p.tif', tmp_path / 'tp.vrt')
    assert_identical(tmp_path / 'v.tif', tmp_path / 'tv.vrt')
    assert tiled == local


def test_killed_worker_costs_only_its_task(tmp_path, scheduler):
    from dask_faults import KillWorkerOnTask
    flag = tmp_path / 'kill-once'
    flag.touch()
    apply_model(REFLECTANCE, CNN, tmp_path / 'local.tif')
    with distributed.Client(scheduler) as client:
        client.register_plugin(KillWorkerOnTask('inference_task-r0000064_c0000128', flag))
        try:
            run = ClusterRun(scheduler, TILE)
            steps.infer(run, REFLECTANCE, CNN, tmp_path / 'tiled.tif')
        finally:
            client.unregister_worker_plugin(KillWorkerOnTask.name)
        client.wait_for_workers(2)
    assert not flag.exists()  # the worker was killed
    assert run.stats['computed'] == 16
    assert_identical(tmp_path / 'local.tif', tmp_path / 'tiled.tif')


def test_interrupted_run_resumes_from_the_manifest(tmp_path, scheduler):
    descriptions = ['B1', 'B2', 'B3', 'B4']
    calibrate_raster(DN, tmp_path / 'local.tif', GAINS, OFFSETS, descriptions)
    finished = []
    interrupted = ClusterRun(scheduler, TILE, progress=finished.append, cancel=lambda: len(finished) >= 5)
    with pytest.raises(CancelledError):
        steps.calibrate(interrupted, DN, tmp_path / 'tiled.tif', GAINS, OFFSETS, descriptions)
    assert not (tmp_path / 'tiled.tif').exists()  # no half-written output
    folder = tiles_folder(tmp_path / 'tiled.tif')
    recorded = [json.loads(line)['result'] for line in (folder / MANIFEST_NAME).read_text().splitlines()[1:]]
    assert len(recorded) == len(finished) >= 5
    damaged = folder / recorded[0]['files']['OUTPUT'][0]
    damaged.write_bytes(damaged.read_bytes()[:-10])  # a tile damaged since: its checksum fails

    run = ClusterRun(scheduler, TILE)
    steps.calibrate(run, DN, tmp_path / 'tiled.tif', GAINS, OFFSETS, descriptions)
    assert run.stats['skipped'] == len(recorded) - 1
    assert run.stats['computed'] == 16 - run.stats['skipped']
    assert_identical(tmp_path / 'local.tif', tmp_path / 'tiled.tif')


def test_parameters_changed_since_the_interrupted_run_start_over(tmp_path):
    descriptions = ['B1', 'B2', 'B3', 'B4']
    steps.calibrate(ClusterRun(None, TILE), DN, tmp_path / 'out.vrt', GAINS, OFFSETS, descriptions)
    run = ClusterRun(None, TILE)
    steps.calibrate(run, DN, tmp_path / 'out.vrt', GAINS * 2, OFFSETS, descriptions)
    assert run.stats == {'tiles': 16, 'skipped': 0, 'computed': 16}
    calibrate_raster(DN, tmp_path / 'local.tif', GAINS * 2, OFFSETS, descriptions)
    assert_identical(tmp_path / 'local.tif', tmp_path / 'out.vrt')


def test_paths_the_workers_cannot_see(tmp_path, scheduler):
    only_here = '/vsimem/only-in-this-process.tif'  # GDAL's in-memory files are private to a process
    gdal.Translate(only_here, DN)
    try:
        with pytest.raises(InputError, match='cannot read') as error:
            steps.calibrate(ClusterRun(scheduler, TILE), only_here, tmp_path / 'out.tif', GAINS, OFFSETS,
                            ['B1', 'B2', 'B3', 'B4'])
        assert error.value.parameter == 'INPUT'
    finally:
        gdal.Unlink(only_here)


def test_cog_output(tmp_path):
    grid = make_grid(100, 90)
    data = np.arange(3 * 90 * 100, dtype=np.float32).reshape(3, 90, 100) + 1
    source = write_test_raster(tmp_path / 'dn.tif', data, grid)
    steps.calibrate(ClusterRun(None, 32, cog=True), source, tmp_path / 'cog.tif', GAINS[:3], OFFSETS[:3],
                    ['a', 'b', 'c'])
    assert gdal.Open(str(tmp_path / 'cog.tif')).GetMetadata('IMAGE_STRUCTURE').get('LAYOUT') == 'COG'
    np.testing.assert_allclose(pixels(tmp_path / 'cog.tif'), data * GAINS[:3, None, None], rtol=1e-6)


@pytest.fixture
def cluster_setting(qgis_app, scheduler):
    """The provider setting "Dask scheduler address" pointing at the test cluster while a test runs."""
    from processing.core.ProcessingConfig import ProcessingConfig

    from rsgeochem.core.distributed.runner import SCHEDULER_SETTING
    assert ProcessingConfig.getSetting(SCHEDULER_SETTING) == ''  # registered by the provider, empty
    ProcessingConfig.setSettingValue(SCHEDULER_SETTING, scheduler)
    yield
    ProcessingConfig.setSettingValue(SCHEDULER_SETTING, '')


def test_algorithms_run_on_the_cluster_set_in_the_provider_settings(run_alg, tmp_path, test_data, request):
    meuse = test_data / 'meuse'
    sqrt_dist = str(tmp_path / 'sqrtdist.tif')
    gdal.Translate(sqrt_dist, str(meuse / 'meuse_grid_covariates.tif'), bandList=[2])
    runs = {'applyinversionmodel': {'INPUT': REFLECTANCE}, 'darkobjectsubtraction': {'INPUT': REFLECTANCE},
            'surfacemask': {'INPUT': REFLECTANCE},
            'kriging': {'INPUT': str(meuse / 'meuse.gpkg'), 'FIELD': 'zinc', 'LOG_TRANSFORM': True,
                        'DRIFT_RASTERS': [sqrt_dist], 'GRID_EXTENT': 1, 'N_NEIGHBOURS': 16,
                        'VARIOGRAM_MODEL': 'exponential', 'NUGGET': 0.05, 'SILL': 0.2, 'RANGE': 900.0}}
    from qgis.core import QgsProcessingFeedback

    class Log(QgsProcessingFeedback):
        messages = []

        def pushInfo(self, text):  # noqa: N802 - QGIS API
            self.messages.append(text)

    for where in ('local', 'cluster'):
        if where == 'cluster':
            request.getfixturevalue('cluster_setting')
        for algorithm, parameters in runs.items():
            run_alg(algorithm, {**parameters, 'OUTPUT': str(tmp_path / f'{algorithm}_{where}.tif')}, Log())
    assert sum('on the Dask cluster' in message for message in Log.messages) == len(runs)
    for algorithm in runs:
        assert_identical(tmp_path / f'{algorithm}_local.tif', tmp_path / f'{algorithm}_cluster.tif')
    # QGIS's "Creation options" reach the output assembled from the workers' tiles
    result = run_alg('surfacemask', {'INPUT': REFLECTANCE, 'CREATION_OPTIONS': 'COMPRESS=DEFLATE|ZLEVEL=9',
                                     'OUTPUT': str(tmp_path / 'deflate.tif')})
    assert gdal.Open(result['OUTPUT']).GetMetadata('IMAGE_STRUCTURE')['COMPRESSION'] == 'DEFLATE'


def test_creation_options_reach_the_workers_tiles(tmp_path, scheduler):
    with creation_options(['COMPRESS=DEFLATE', 'ZLEVEL=9']):
        steps.calibrate(ClusterRun(scheduler, TILE), DN, tmp_path / 'out.vrt', GAINS, OFFSETS, list('abcd'))
    tiles = sorted((tmp_path / 'out.tiles' / 'OUTPUT').glob('*.tif'))
    assert len(tiles) == 16
    compression = {gdal.Open(str(path)).GetMetadata('IMAGE_STRUCTURE')['COMPRESSION'] for path in tiles}
    assert compression == {'DEFLATE'}


def test_command_line_runs_a_step_on_the_cluster(tmp_path, scheduler):
    """python -m rsgeochem.core.distributed, no QGIS: the code goes to the workers by upload_file."""
    apply_model(REFLECTANCE, CNN, tmp_path / 'local.tif')
    command = [sys.executable, '-m', 'rsgeochem.core.distributed', '--scheduler', scheduler, '--upload',
               '--tile-size', str(TILE), 'applyinversionmodel', '--input', REFLECTANCE, '--model', CNN,
               '--output', str(tmp_path / 'cli.vrt')]
    done = subprocess.run(command, env=dict(os.environ, PYTHONPATH=str(PLUGIN_PATH)), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert '16 tiles computed' in done.stdout and 'tiles done: 100.0 %' in done.stderr
    assert_identical(tmp_path / 'local.tif', tmp_path / 'cli.vrt')
    missing = subprocess.run(command[:-1] + [str(tmp_path / 'cli2.vrt')] + ['--bands', '9,1,2,3'],
                             env=dict(os.environ, PYTHONPATH=str(PLUGIN_PATH)), capture_output=True,
                             text=True, timeout=120)
    assert missing.returncode == 2 and 'BANDS: band(s) [9] do not exist' in missing.stderr


def test_rare_earth_workflow_on_the_cluster_matches_the_local_steps_and_resumes(tmp_path, scheduler, capsys):
    """The workflow's block-wise steps, interrupted in step 3 and started again from the command
    line, give each output of the core functions run one after another on whole rasters."""
    samples_path, field = str(SAMPLE / 'simulated_re2o3_samples.gpkg'), 're2o3_pct'
    esun = '1944.98,1854.42,1542.87,1080.97'
    settings = RareEarthSettings(DN, ','.join(map(str, GAINS)), esun, samples_path, field, CNN,
                                 str(tmp_path / 'run'), metadata=str(SAMPLE / 'gf2like_pms1_dn.xml'),
                                 mask_vegetation=True, indices=('gf2_ndvi',), kriging_margin=0.0)
    finished = []
    interrupted = ClusterRun(scheduler, TILE, progress=finished.append, cancel=lambda: len(finished) >= 56)
    with pytest.raises(CancelledError):  # 16 calibration, 16 histogram, 16 subtraction, 8 mask tiles
        rare_earth_workflow(interrupted, settings, report=lambda text: None)
    capsys.readouterr()
    assert cli_main(['--scheduler', scheduler, '--tile-size', str(TILE), 'workflow', '--image', DN,
                     '--metadata', settings.metadata, '--gains', settings.gains, '--esun', esun, '--samples',
                     samples_path, '--field', field, '--model', CNN, '--output-dir', settings.output_dir,
                     '--mask-vegetation', '--indices', 'gf2_ndvi', '--kriging-margin', '0']) == 0
    printed = capsys.readouterr().out
    assert 'reused from the earlier run: dark_objects (and the complete tiles)' in printed
    computed, skipped = (int(v) for v in re.search(r'(\d+) tiles computed, (\d+) reused', printed).groups())
    assert skipped >= 2 * 16 + 8 and computed + skipped == 6 * 16
    out = {name: str(tmp_path / 'run' / f'{name}.vrt') for name in (
        'toa_reflectance', 'surface_reflectance', 'surface_mask', 'indices', 'kriged', 'kriging_variance',
        'predicted_map')}

    local = tmp_path / 'local'
    local.mkdir()
    a, b, descriptions = calibration_coefficients(DN, 'gf2_pms1', '', settings.metadata, settings.gains, '',
                                                  settings.esun)
    calibrate_raster(DN, local / 'toa.tif', a, b, descriptions)
    assert_identical(local / 'toa.tif', out['toa_reflectance'])
    objects = dark_objects(read_histogram(local / 'toa.tif'), 1000, 0.01)
    names = raster_info(out['surface_reflectance']).descriptions
    path_values = [path_reflectance(obj.value, 1.0) for obj in objects]
    subtract_raster(local / 'toa.tif', local / 'sr.tif', path_values, 1.0, names)
    assert_identical(local / 'sr.tif', out['surface_reflectance'])
    write_surface_mask(local / 'sr.tif', local / 'mask.tif', {'green': 2, 'red': 3, 'nir': 4},
                       {'ndvi_threshold': 0.3, 'ndwi_threshold': 0.0, 'nir_water_threshold': 0.07})
    assert_identical(local / 'mask.tif', out['surface_mask'])
    assert raster_info(out['indices']).descriptions == ('NDVI (B4-B3)/(B4+B3)',)

    grid, samples = kriging_inputs(samples_path, field, local / 'sr.tif')
    model = fit_for_samples(samples, 'auto', n_neighbours=32).model
    krige_grid(samples, model, grid, local / 'kriged.tif', local / 'variance.tif', None, 32)
    # kriged over the samples' extent (margin 0): the window of the image's pixels that holds every
    # sample, each edge within a pixel of the outermost sample; exact Kriging of a pixel does not
    # depend on the grid, so the window equals the whole-image Kriging cut to it
    window = raster_info(out['kriged']).grid
    x0, dx, _, y0, _, dy = grid.geotransform
    col, row = round((window.geotransform[0] - x0) / dx), round((window.geotransform[3] - y0) / dy)
    left, bottom, right, top = window.extent
    assert left <= samples.x.min() < left + dx and right - dx < samples.x.max() <= right
    assert bottom <= samples.y.min() < bottom - dy and top + dy < samples.y.max() <= top
    for whole, part in (('kriged.tif', out['kriged']), ('variance.tif', out['kriging_variance'])):
        expected = gdal.Open(str(local / whole)).ReadAsArray()
        np.testing.assert_array_equal(gdal.Open(part).ReadAsArray(),
                                      expected[row:row + window.height, col:col + window.width])
    apply_model(local / 'sr.tif', CNN, local / 'map.tif', [1, 2, 3, 4], local / 'mask.tif', minimum=0.0)
    assert_identical(local / 'map.tif', out['predicted_map'])

    content = areas.ValueSource(str(local / 'map.tif'), 1, str(local / 'mask.tif'))
    statistics = areas.raster_statistics(content)
    thresholds = json.loads((tmp_path / 'run' / 'workflow.json').read_text())['anomaly_thresholds']['value']
    assert thresholds['median + 2 MAD'] == areas.median_mad_threshold(statistics, 2.0)
    assert thresholds['95th percentile'] == areas.percentile_threshold(statistics, 95.0)
    mean_sd = areas.mean_sd_threshold(statistics, 2.0)
    np.testing.assert_allclose(thresholds['mean + 2 SD'], mean_sd, rtol=1e-12)  # moments merged otherwise
    fractal = concentration_area(statistics.log_edges, statistics.log_counts, statistics.pixel_area, 3)
    assert thresholds['C-A fractal, 3 segments'] == fractal.threshold


def test_command_line_kriging_with_drift_rasters(tmp_path, scheduler, test_data):
    """Universal Kriging with an external drift raster from the command line, on the cluster."""
    meuse = test_data / 'meuse'
    sqrt_dist = str(tmp_path / 'sqrtdist.tif')
    gdal.Translate(sqrt_dist, str(meuse / 'meuse_grid_covariates.tif'), bandList=[2])
    grid, samples = kriging_inputs(meuse / 'meuse.gpkg', 'zinc', None, [sqrt_dist], log_transform=True)
    assert samples.drift.shape == (len(samples), 1)
    model = VariogramModel('exponential', 0.05, 0.2, 900.0)
    drift = DriftRasters([sqrt_dist], grid)
    krige_grid(samples, model, grid, tmp_path / 'local.tif', None, drift, 16)
    code = cli_main(['--scheduler', scheduler, '--tile-size', '32', 'kriging', '--samples',
                     str(meuse / 'meuse.gpkg'), '--field', 'zinc', '--log', '--drift', sqrt_dist,
                     '--variogram', 'exponential', '--nugget', '0.05', '--sill', '0.2', '--range', '900',
                     '--neighbours', '16', '--output', str(tmp_path / 'cli.vrt')])
    assert code == 0
    assert_identical(tmp_path / 'local.tif', tmp_path / 'cli.vrt')
    ordinary = tmp_path / 'ordinary.tif'  # the drift changes the map
    krige_grid(kriging_inputs(meuse / 'meuse.gpkg', 'zinc', sqrt_dist, log_transform=True)[1], model, grid,
               ordinary, None, None, 16)
    assert not np.array_equal(pixels(ordinary), pixels(tmp_path / 'cli.vrt'), equal_nan=True)


COARSE_CU = str(SAMPLE / 'simulated_cu_grid_250m.tif')  # 250 m cells over the 10 m sample image


@pytest.mark.parametrize('aligned', [True, False])
def test_fusion_matches_local(tmp_path, scheduler, aligned, monkeypatch):
    """Aligned: 9 x 9 cells, each 25 x 25 whole pixels of the 225 x 225 image (cell sums from the
    tiles); not aligned: the cells overhang the image's edge (GDAL's average warp, as locally).
    K-means clusters, a residual pass; the local rows of tiles are made 50 (37) rows high (256 by
    default) so that the image has several, with 62-row halos; strips join two of them (one)."""
    monkeypatch.setattr(pipeline, 'TILE_ROWS', 50 if aligned else 37)
    image, coarse = str(tmp_path / 'image.tif'), str(tmp_path / 'coarse.tif')
    gdal.Translate(image, REFLECTANCE, srcWin=[0, 0, 225, 225] if aligned else [0, 0, 243, 233])
    gdal.Translate(coarse, COARSE_CU, srcWin=[0, 0, 9, 9] if aligned else [0, 0, 10, 10])
    settings = FusionSettings(clusters=3, residual_iterations=1, memory_mb=36)
    pipeline.fuse(coarse, 1, image, [], tmp_path / 'local.tif', tmp_path / 'local_clusters.tif',
                  settings=settings, log=lambda text: None)
    run = ClusterRun(scheduler, 160 if aligned else TILE)
    levels, model, warnings = distributed_fusion.fuse(run, coarse, 1, image, [], tmp_path / 'tiled.vrt',
                                                      tmp_path / 'clusters.vrt', settings=settings,
                                                      log=lambda text: None)
    assert levels == 5 and len(model.fits) == 3
    assert run.stats['tiles'] == (3 + 2 * 2 if aligned else 7 + 4 * 4)  # strips, then residual squares
    assert (tmp_path / 'tiled.fusion' / 'fused_0_mean.tif').exists() == aligned
    assert_identical(tmp_path / 'local.tif', tmp_path / 'tiled.vrt')
    assert_identical(tmp_path / 'local_clusters.tif', tmp_path / 'clusters.vrt')


def test_fusion_survives_a_killed_worker_and_resumes(tmp_path, scheduler, monkeypatch):
    from dask_faults import KillWorkerOnTask
    monkeypatch.setattr(pipeline, 'TILE_ROWS', 50)   # several rows of tiles in the 225-row image
    image, coarse = str(tmp_path / 'image.tif'), str(tmp_path / 'coarse.tif')
    gdal.Translate(image, REFLECTANCE, srcWin=[0, 0, 225, 225])
    gdal.Translate(coarse, COARSE_CU, srcWin=[0, 0, 9, 9])
    settings = FusionSettings(residual_iterations=1, memory_mb=36)
    pipeline.fuse(coarse, 1, image, [], tmp_path / 'local.tif', settings=settings, log=lambda text: None)
    finished = []
    interrupted = ClusterRun(scheduler, TILE, progress=finished.append, cancel=lambda: len(finished) >= 2)
    with pytest.raises(CancelledError):
        distributed_fusion.fuse(interrupted, coarse, 1, image, [], tmp_path / 'tiled.tif',
                                settings=settings, log=lambda text: None)
    manifest = tmp_path / 'tiled.fusion' / 'fused_0.tiles' / MANIFEST_NAME
    recorded = [json.loads(line)['tile'] for line in manifest.read_text().splitlines()[1:]]
    left = sorted({f'r{row:07d}_c0000000' for row in range(0, 225, 50)} - set(recorded))
    flag = tmp_path / 'kill-once'
    flag.touch()
    with distributed.Client(scheduler) as client:
        client.register_plugin(KillWorkerOnTask(f'fusion_task-{left[0]}', flag))
        try:
            run = ClusterRun(scheduler, TILE)
            distributed_fusion.fuse(run, coarse, 1, image, [], tmp_path / 'tiled.tif', settings=settings,
                                    log=lambda text: None)
        finally:
            client.unregister_worker_plugin(KillWorkerOnTask.name)
        client.wait_for_workers(2)
    assert not flag.exists()  # the worker was killed
    assert run.stats['skipped'] == len(recorded) >= 2
    assert_identical(tmp_path / 'local.tif', tmp_path / 'tiled.tif')


def test_command_line_fusion(tmp_path, scheduler):
    pipeline.fuse(COARSE_CU, 1, REFLECTANCE, [2, 3, 4], tmp_path / 'local.tif',
                  settings=FusionSettings(memory_mb=36), log=lambda text: None)
    code = cli_main(['--scheduler', scheduler, '--memory', '36', 'laplacianfusion', '--grid', COARSE_CU,
                     '--image', REFLECTANCE, '--bands', '2,3,4', '--output', str(tmp_path / 'cli.tif')])
    assert code == 0
    assert_identical(tmp_path / 'local.tif', tmp_path / 'cli.tif')
    assert sorted(path.name for path in tmp_path.iterdir()) == ['cli.tif', 'local.tif']  # no work files left


def test_fusion_with_the_nonlinear_regression_matches_local(tmp_path, scheduler, monkeypatch):
    """The default estimator learns from the coarse cells (it needs 680 for 4 bands): a grid of 45 x
    45 cells, band 3 of the image averaged over 5 x 5 pixels, aligned with the image; several rows
    of tiles (50 rows high instead of 256)."""
    monkeypatch.setattr(pipeline, 'TILE_ROWS', 50)
    info = raster_info(REFLECTANCE)
    image = str(tmp_path / 'image.tif')
    gdal.Translate(image, REFLECTANCE, srcWin=[0, 0, 225, 225])
    red = pixels(image)[2].astype(np.float64)
    x0, dx, _, y0, _, dy = info.grid.geotransform
    coarse_grid = Grid(45, 45, (x0, 5 * dx, 0.0, y0, 0.0, 5 * dy), info.grid.crs_wkt)
    coarse = write_raster(tmp_path / 'coarse.tif', coarse_grid, red.reshape(45, 5, 45, 5).mean(axis=(1, 3)))
    settings = FusionSettings(memory_mb=13)
    pipeline.fuse(coarse, 1, image, [], tmp_path / 'local.tif', settings=settings, log=lambda text: None)
    run = ClusterRun(scheduler, TILE)
    _, model, warnings = distributed_fusion.fuse(run, coarse, 1, image, [], tmp_path / 'tiled.tif',
                                                 settings=settings, log=lambda text: None)
    assert model.basis is not None and not warnings
    assert run.stats['tiles'] == 5 + 4 * 4
    assert_identical(tmp_path / 'local.tif', tmp_path / 'tiled.tif')
