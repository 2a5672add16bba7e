"""Bad inputs, one case per cause found by the hostile-user review (issue 16), through
processing.run where qgis_process adds nothing (test_bad_inputs_cli.py has the others): a refused
run raises QgsProcessingException (qgis_process: exit code 1) naming the parameter, and leaves every
file as it was (inputs hashed, output folders listed, hidden partial files included)."""
import math
import os
import shutil
import subprocess

import numpy as np
import pytest
from osgeo import gdal

from factories import (
    LogFeedback,
    damaged_copy,
    make_grid,
    small_survey,
    snapshot,
    write_points,
    write_test_raster,
)
from rsgeochem.core.errors import InputError
from rsgeochem.core.raster import blockio, scratch

onnx = pytest.importorskip('onnx')
pytest.importorskip('onnxruntime')


@pytest.fixture(scope='module')
def inputs(qgis_app, tmp_path_factory):
    folder = tmp_path_factory.mktemp('inputs')
    rng = np.random.default_rng(3)
    grid = make_grid(40, 32)
    xy = [(grid.extent[0] + 30 * rng.uniform(1, 39), grid.extent[1] + 30 * rng.uniform(1, 31))
          for _ in range(40)]
    bands = rng.uniform(0.05, 0.3, (4, 40))
    table = write_points(folder / 'table.gpkg', xy, {
        'cu': list(10 + 50 * bands[0] - 20 * bands[2] + rng.normal(0, 0.5, 40)),
        **{f'b{i + 1}': list(bands[i]) for i in range(4)}})
    return {'folder': folder, 'table': table, **small_survey(folder)}


@pytest.fixture
def refused(run_alg, inputs, tmp_path):
    """run(algorithm, parameters, key): the run must fail naming `key` and leave the inputs and
    tmp_path as they were. Returns the message."""
    from qgis.core import QgsProcessingException

    def run(algorithm, parameters, key):
        before = snapshot(inputs['folder'], tmp_path)
        with pytest.raises(QgsProcessingException) as error:
            run_alg(algorithm, parameters)
        message = str(error.value)
        assert f'{key}: ' in message and 'Traceback' not in message, message
        assert snapshot(inputs['folder'], tmp_path) == before
        return message
    return run


def raster(path):
    return gdal.Open(str(path)).ReadAsArray().astype(np.float64)


# --- 1. a raster that opens but cannot be read ---------------------------------------------------

@pytest.mark.parametrize('algorithm, key, extra', [
    ('kriging', 'DRIFT_RASTERS', {'INPUT': 'samples', 'FIELD': 'cu'}),
    ('laplacianfusion', 'INPUT_IMAGE', {'INPUT_GEOCHEM': 'coarse'}),
    ('surfacesamples', 'MASK', {'INPUT': 'image', 'SAMPLES': 'samples', 'FIELD': 'cu', 'KRIGED': 'image'})])
def test_damaged_raster_names_its_parameter(refused, inputs, tmp_path, algorithm, key, extra):
    parameters = {name: inputs.get(value, value) for name, value in extra.items()}
    if key == 'MASK':
        keep = np.random.default_rng(1).uniform(0.5, 1, (32, 40))  # > 0: keep; noisy: tiles of some size
        parameters[key] = damaged_copy(write_test_raster(tmp_path / 'mask.tif', keep), tmp_path / 'bad.tif')
    else:
        parameters[key] = [inputs['damaged']] if key == 'DRIFT_RASTERS' else inputs['damaged']
    output = tmp_path / ('out.gpkg' if algorithm == 'surfacesamples' else 'out.tif')
    message = refused(algorithm, {**parameters, 'OUTPUT': str(output)}, key)
    assert 'the file is damaged at rows' in message


# --- 2. and 4. destinations checked before any work ----------------------------------------------

def test_output_under_a_file(refused, inputs, tmp_path):
    message = refused('surfacemask', {'INPUT': inputs['image'], 'OUTPUT': f'{inputs["image"]}/mask.tif'},
                      'OUTPUT')
    assert 'is a file, not a folder' in message


def test_output_in_a_read_only_folder(refused, inputs, tmp_path):
    folder = tmp_path / 'locked'
    folder.mkdir()
    # immutable: not writable even for root, who ignores permission bits
    if shutil.which('chattr') is None or subprocess.run(['chattr', '+i', str(folder)],
                                                        capture_output=True).returncode != 0:
        pytest.skip('chattr +i is not available here')
    try:
        message = refused('principalcomponents',
                          {'INPUT': inputs['image'], 'OUTPUT': str(folder / 'pca.tif')}, 'OUTPUT')
    finally:
        subprocess.run(['chattr', '-i', str(folder)], check=True)
    assert 'is not writable' in message


def test_unsupported_extension(refused, inputs, tmp_path):
    """The fused map as .jpg failed after the cluster raster was written; a model went to .txt."""
    message = refused('laplacianfusion', {'INPUT_GEOCHEM': inputs['coarse'], 'INPUT_IMAGE': inputs['image'],
                                          'OUTPUT': str(tmp_path / 'fused.jpg'),
                                          'OUTPUT_CLUSTERS': str(tmp_path / 'clusters.tif')}, 'OUTPUT')
    assert 'does not end in .tif' in message
    message = refused('traininversionmodel', {
        'INPUT': inputs['table'], 'TARGET': 'cu', 'FEATURES': ['b1', 'b2'], 'MODEL': 1,
        'OUTPUT_MODEL': str(tmp_path / 'model.txt'), 'OUTPUT_HTML': str(tmp_path / 'report.html')},
        'OUTPUT_MODEL')
    assert 'does not end in .onnx' in message


def test_output_replacing_an_input_or_another_output(refused, inputs, tmp_path):
    refused('spectralindices', {'INPUT': inputs['image'], 'SENSOR': 3, 'OUTPUT': inputs['image']}, 'OUTPUT')
    link = tmp_path / 'link.tif'
    link.symlink_to(inputs['image'])
    message = refused('applyinversionmodel', {'INPUT': inputs['image'], 'OUTPUT': str(link)}, 'OUTPUT')
    assert 'is the file of input INPUT' in message
    same = str(tmp_path / 'k.tif')
    message = refused('kriging', {'INPUT': inputs['samples'], 'FIELD': 'cu', 'OUTPUT': same,
                                  'OUTPUT_VARIANCE': same}, 'OUTPUT_VARIANCE')
    assert 'is also the file of output OUTPUT' in message


def test_vector_outputs_create_folders_and_name_the_added_extension(run_alg, inputs, tmp_path):
    feedback = LogFeedback()
    run_alg('kriging', {'INPUT': inputs['samples'], 'FIELD': 'cu', 'OUTPUT': str(tmp_path / 'k.tif'),
                        'OUTPUT_CV': str(tmp_path / 'new' / 'folder' / 'cv')}, feedback)
    assert (tmp_path / 'new' / 'folder' / 'cv.gpkg').exists()
    assert any(f'written as "{tmp_path}/new/folder/cv.gpkg"' in line for line in feedback.lines)


# --- 3. workflows: every output checked before the first step, earlier outputs listed ------------

def test_failing_workflow_lists_what_earlier_steps_wrote(run_alg, inputs, tmp_path):
    from qgis.core import QgsProcessingException
    far = write_test_raster(tmp_path / 'far.tif', np.ones((4, 4)),
                            make_grid(4, 4, origin=(900000.0, 6600000.0)))  # far from the image
    outputs = {'kriging:kriged_grid': 'k.tif', 'kriging:kriging_report': 'k.html',
               'principalcomponents:components': 'pc.tif', 'principalcomponents:pca_report': 'pca.html',
               'laplacianfusion:fused_map': 'fused.tif', 'laplacianfusion:fusion_report': 'f.html',
               'anomalies:anomaly_areas': 'a.gpkg', 'anomalies:anomaly_report': 'a.html'}
    feedback = LogFeedback()
    with pytest.raises(QgsProcessingException):
        run_alg('geochemfusion', {'IMAGE': inputs['image'], 'SAMPLES': inputs['samples'], 'FIELD': 'cu',
                                  'CELL_SIZE': 120, 'REFERENCE': far,
                                  **{key: str(tmp_path / name) for key, name in outputs.items()}}, feedback)
    listed = next(line for line in feedback.lines if line.startswith('The steps before the failure wrote'))
    assert f'kriging:kriged_grid: {tmp_path}/k.tif' in listed and 'fused' not in listed
    assert not (tmp_path / 'fused.tif').exists()


# --- 5. grid size and disk space -----------------------------------------------------------------

def test_kriging_grid_too_large(refused, inputs, tmp_path):
    message = refused('kriging', {'INPUT': inputs['samples'], 'FIELD': 'cu', 'PIXEL_SIZE': 0.00001,
                                  'OUTPUT': str(tmp_path / 'k.tif')}, 'PIXEL_SIZE')
    suggested = float(message.split('a pixel size of ')[1].split()[0])
    width, height = (float(side) for side in message.split('would have ')[1].split(' =')[0].split(' x '))
    pixels = width * height * (0.00001 / suggested) ** 2  # with the suggested pixel size
    assert pixels <= 1e9 < pixels * 1.5 ** 2


def test_free_space_check_names_the_output(tmp_path):
    with pytest.raises(InputError, match='needs up to .* GB') as error:
        blockio.check_free_space(tmp_path / 'missing' / 'folder', 2 ** 80, 'OUTPUT')
    assert error.value.parameter == 'OUTPUT'


# --- 6. non-finite and extreme numbers -----------------------------------------------------------

def test_non_finite_numbers_refused(refused, inputs, tmp_path):
    refused('kriging', {'INPUT': inputs['samples'], 'FIELD': 'cu', 'VARIOGRAM_MODEL': 'spherical',
                        'SILL': math.nan, 'RANGE': 300.0, 'OUTPUT': str(tmp_path / 'k.tif')}, 'SILL')
    message = refused('radiometriccalibration', {
        'INPUT': inputs['image'], 'SENSOR': 9, 'GAINS': 'nan,inf,-inf,1', 'ESUN': '1,1,1,1',
        'SUN_ELEVATION': 45, 'DATE': '2020-06-01', 'OUTPUT': str(tmp_path / 'c.tif')}, 'GAINS')
    assert 'not a finite number' in message


def test_kriging_is_unchanged_by_the_units_of_the_values(run_alg, inputs, tmp_path):
    """Kriging is linear in the values: samples in units 1e30 times smaller give predictions 1e30
    times larger. Such values overflowed the float32 grid products of neighbourhood Kriging (every
    pixel nodata) and swamped the unit covariance of the padded neighbour sets."""
    samples = {}
    for name, scale in (('plain', 1.0), ('huge', 1e30)):
        points = write_points(tmp_path / f'{name}.gpkg', [(500100.0 + 37 * i % 1100, 5599100.0 + 53 * i % 900)
                                                          for i in range(30)],
                              {'v': [scale * (20 + 10 * math.sin(i)) for i in range(30)]})
        samples[name] = run_alg('kriging', {
            'INPUT': points, 'FIELD': 'v', 'PIXEL_SIZE': 50.0, 'N_NEIGHBOURS': 10,
            'VARIOGRAM_MODEL': 'spherical', 'SILL': 50 * scale ** 2, 'RANGE': 600.0,
            'OUTPUT': str(tmp_path / f'{name}.tif')})['CV_RMSE']
        assert np.isfinite(samples[name])
    np.testing.assert_allclose(raster(tmp_path / 'huge.tif'), 1e30 * raster(tmp_path / 'plain.tif'),
                               rtol=1e-5)
    assert samples['huge'] == pytest.approx(1e30 * samples['plain'], rel=1e-6)


def test_kriging_with_a_degenerate_variogram_warns_instead_of_crashing(run_alg, inputs, tmp_path):
    feedback = LogFeedback()
    run_alg('kriging', {'INPUT': inputs['samples'], 'FIELD': 'cu', 'VARIOGRAM_MODEL': 'spherical',
                        'SILL': 1e30, 'RANGE': 1e-30, 'OUTPUT': str(tmp_path / 'k.tif')}, feedback)
    assert any(line.startswith('RANGE 1e-30 is far from the scale of the samples') for line in feedback.lines)


def linear_model(path, metadata, output_type=None):
    """y = x1 + x2 for (N, 2) float inputs, with rsgeochem metadata; `output_type` (an ONNX type)
    casts the output, e.g. to int64 as a classifier's labels."""
    from rsgeochem.core.inversion.onnx_metadata import write_metadata
    helper = onnx.helper
    nodes = [helper.make_node('ReduceSum', ['x'], ['s'], axes=[1], keepdims=1)]
    kind = onnx.TensorProto.FLOAT
    if output_type is not None:
        nodes.append(helper.make_node('Cast', ['s'], ['y'], to=output_type))
        kind = output_type
    else:
        nodes.append(helper.make_node('Identity', ['s'], ['y']))
    graph = helper.make_graph(nodes, 'm',
                              [helper.make_tensor_value_info('x', onnx.TensorProto.FLOAT, ['N', 2])],
                              [helper.make_tensor_value_info('y', kind, ['N', 1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 12)])
    model.ir_version = 8
    onnx.save(write_metadata(model, metadata), str(path))
    return str(path)


def test_predictions_outside_the_training_range_are_counted_and_flagged(run_alg, tmp_path):
    values = np.full((2, 6, 8), 0.5)
    values[0, 1, 2] = 1e30                  # far above the training range of feature a
    values[1, 4, 5:7] = -3.0                # below that of feature b
    values[0, 5, 7] = 1.05                  # inside the range widened by 10 % of its span
    image = write_test_raster(tmp_path / 'image.tif', values, descriptions=['a', 'b'])
    model = linear_model(tmp_path / 'model.onnx', {'features': ['a', 'b'],
                                                   'feature_range': {'min': [0, 0], 'max': [1, 1]}})
    feedback = LogFeedback()
    run_alg('applyinversionmodel', {'INPUT': image, 'MODEL': model, 'OUTPUT': str(tmp_path / 'p.tif'),
                                    'OUTPUT_OUT_OF_RANGE': str(tmp_path / 'flags.tif')}, feedback)
    assert any(line.startswith('3 of 48 predicted pixels (6.2%) have band values outside the training range')
               for line in feedback.lines)
    expected = np.zeros((6, 8))
    expected[1, 2] = expected[4, 5] = expected[4, 6] = 1
    np.testing.assert_array_equal(raster(tmp_path / 'flags.tif'), expected)


# --- 7. classifier models ------------------------------------------------------------------------

def test_classifier_model_refused(refused, inputs, tmp_path):
    model = linear_model(tmp_path / 'classes.onnx', {'features': ['B1', 'B2']}, onnx.TensorProto.INT64)
    message = refused('applyinversionmodel', {'INPUT': inputs['image'], 'MODEL': model,
                                              'OUTPUT': str(tmp_path / 'p.tif')}, 'MODEL')
    assert 'tensor(int64)' in message and 'classifier' in message


# --- 8. user strings in reports ------------------------------------------------------------------

HOSTILE = ['<script>alert(1)</script>', r'$\frac{$', 'B$3', r'\$x$']


def test_user_strings_are_escaped_in_reports(run_alg, tmp_path):
    rng = np.random.default_rng(5)
    image = write_test_raster(tmp_path / 'image.tif', rng.normal(size=(4, 20, 20)), descriptions=HOSTILE)
    run_alg('principalcomponents', {'INPUT': image, 'OUTPUT': str(tmp_path / 'pc.tif'),
                                    'OUTPUT_HTML': str(tmp_path / 'pca.html')})
    page = (tmp_path / 'pca.html').read_text()
    assert '&lt;script&gt;' in page and '<script>' not in page
    values = rng.normal(size=(4, 25))
    table = write_points(tmp_path / 't.gpkg', [(500000.0 + i, 5600000.0) for i in range(25)],
                         {name: list(column) for name, column in zip(['$t$', *HOSTILE[1:]], values)})
    run_alg('correlation', {'INPUT': table, 'TARGET': '$t$', 'OUTPUT': str(tmp_path / 'c.csv'),
                            'OUTPUT_HTML': str(tmp_path / 'c.html')})
    assert r'$\frac{$' in (tmp_path / 'c.html').read_text()


# --- faults: cancel, partial files, temporary folders --------------------------------------------

def test_cancelled_random_forest_writes_nothing(run_alg, inputs, tmp_path):
    from qgis.core import QgsProcessingException
    feedback = LogFeedback()
    feedback.progressChanged.connect(lambda progress: progress > 5 and feedback.cancel())
    with pytest.raises(QgsProcessingException, match='Cancelled: no output was written'):
        run_alg('traininversionmodel', {
            'INPUT': inputs['table'], 'TARGET': 'cu', 'FEATURES': ['b1', 'b2', 'b3'], 'MODEL': 3,
            'RF_TREES': 5000, 'OUTPUT_MODEL': str(tmp_path / 'rf.onnx'),
            'OUTPUT_HTML': str(tmp_path / 'rf.html')}, feedback)
    assert os.listdir(tmp_path) == []


def test_writer_flushes_complete_rows_of_tiles(tmp_path):
    """Complete rows of tiles reach the disk as they are written, so a cancel has at most one row of
    tiles to drop (GDAL used to compress its whole cache into the partial file before deleting it)."""
    grid = make_grid(512, 600)
    noise = np.random.default_rng(0).random((256, 512))  # incompressible
    with blockio.RasterWriter(tmp_path / 'out.tif', grid) as writer:
        writer.write(0, noise[:200])
        assert os.path.getsize(writer.temporary) < 10_000    # a partial row of tiles: in the cache
        writer.write(200, noise[:56])
        assert os.path.getsize(writer.temporary) > 100_000   # tile rows 0-255 compressed on disk


def test_stale_partials_of_ended_runs_removed(run_alg, inputs, tmp_path):
    dead = subprocess.Popen(['true'])  # a process id that has ended
    dead.wait()
    stale = tmp_path / f'.dos.pid{dead.pid}-0123abcd.partial.tif'
    running = tmp_path / f'.dos.pid{os.getpid()}-4567cdef.partial.tif'  # a run of this process
    for path in (stale, running):
        path.write_bytes(b'partial')
    run_alg('darkobjectsubtraction', {'INPUT': inputs['image'], 'OUTPUT': str(tmp_path / 'dos.tif')})
    assert not stale.exists() and running.exists()


def test_scratch_folders_of_ended_runs_removed(tmp_path, monkeypatch):
    monkeypatch.setattr(scratch.tempfile, 'tempdir', str(tmp_path))
    dead = subprocess.Popen(['true'])
    dead.wait()
    stale = tmp_path / f'rsgeochem-fusion-pid{dead.pid}-abc'
    stale.mkdir()
    (stale / 'cubic.vrt').write_text('left by a killed run')
    with scratch.scratch_folder('rsgeochem-fusion') as folder:
        assert not stale.exists() and os.path.isdir(folder)
    assert not os.path.exists(folder)


# --- unclear: silent changes, degenerate inputs, misleading messages -----------------------------

def test_help_texts_state_the_ranges_qgis_enforces(qgis_app):
    from qgis.core import QgsApplication
    algorithm = QgsApplication.processingRegistry().algorithmById('rsgeochem:anomalies')
    assert algorithm.parameterDefinition('PERCENTILE').help().endswith('Range: 0.001 to 99.999.')
    assert algorithm.parameterDefinition('MIN_AREA').help().endswith('Range: 0 or more.')


def test_silent_changes_are_said(run_alg, refused, inputs, tmp_path):
    feedback = LogFeedback()
    run_alg('traininversionmodel', {
        'INPUT': inputs['table'], 'TARGET': 'cu', 'FEATURES': ['b1', 'b2'], 'MODEL': 2, 'PLS_COMPONENTS': 5,
        'OUTPUT_MODEL': str(tmp_path / 'pls.onnx'), 'OUTPUT_HTML': str(tmp_path / 'pls.html')}, feedback)
    assert 'PLS_COMPONENTS: 5 components asked for, but PLS has at most one per feature: 2 are used.' \
        in feedback.lines
    run_alg('correlation', {'INPUT': inputs['table'], 'TARGET': 'cu', 'FEATURES': ['cu', 'b1'],
                            'OUTPUT': str(tmp_path / 'c.csv'), 'OUTPUT_HTML': str(tmp_path / 'c.html')},
            feedback)
    assert any(line.startswith('FEATURES: the target field cu is left out') for line in feedback.lines)
    refused('principalcomponents', {'INPUT': inputs['image'], 'BANDS': [2, 2, 3],
                                    'OUTPUT': str(tmp_path / 'p.tif')}, 'BANDS')


def test_degenerate_inputs_are_said(run_alg, refused, inputs, tmp_path):
    one_pixel = write_test_raster(tmp_path / 'one.tif', np.full((3, 1, 1), 0.2))
    feedback = LogFeedback()
    run_alg('darkobjectsubtraction', {'INPUT': one_pixel, 'OUTPUT': str(tmp_path / 'one_dos.tif')}, feedback)
    assert any(line.startswith('INPUT: only 1 valid pixels in a band') for line in feedback.lines)
    nodata = write_test_raster(tmp_path / 'nodata.tif', np.ma.masked_all((4, 5, 5)))
    refused('radiometriccalibration', {'INPUT': nodata, 'SENSOR': 9, 'GAINS': '1,1,1,1', 'ESUN': '1,1,1,1',
                                       'SUN_ELEVATION': 45, 'DATE': '2020-06-01',
                                       'OUTPUT': str(tmp_path / 'c.tif')}, 'INPUT')
    flat_mask = str(tmp_path / 'flat_mask.tif')
    dataset = gdal.GetDriverByName('GTiff').Create(flat_mask, 40, 32, 1, gdal.GDT_Byte)
    dataset.SetGeoTransform((500000.0, 0.0, 0.0, 5600000.0, 0.0, 0.0))  # pixel size 0
    dataset = None
    message = refused('principalcomponents', {'INPUT': inputs['image'], 'MASK': flat_mask,
                                              'OUTPUT': str(tmp_path / 'p.tif')}, 'MASK')
    assert 'pixel size of 0 x 0' in message
    one_cell = write_test_raster(tmp_path / 'one_cell.tif', np.full((1, 1), 30.0),
                                 make_grid(1, 1, pixel=2000.0))
    message = refused('laplacianfusion', {'INPUT_GEOCHEM': one_cell, 'INPUT_IMAGE': inputs['image'],
                                          'OUTPUT': str(tmp_path / 'f.tif')}, 'INPUT_GEOCHEM')
    assert 'only 1 cell(s) of the geochemical grid lie over the image' in message


def test_misleading_messages_corrected(refused, inputs, tmp_path):
    message = refused('applyinversionmodel', {'INPUT': inputs['image'], 'MODEL': inputs['image'],
                                              'OUTPUT': str(tmp_path / 'p.tif')}, 'MODEL')
    assert 'is not a .onnx file' in message
    in_degrees = write_points(tmp_path / 'degrees.gpkg',
                              [(10 + 0.001 * i, 50 + 0.0007 * (i % 7)) for i in range(40)],
                              {'cu': [float(i % 9) for i in range(40)], 'b1': [float(i) for i in range(40)]},
                              epsg=4326)
    message = refused('traininversionmodel', {
        'INPUT': in_degrees, 'TARGET': 'cu', 'FEATURES': ['b1'], 'MODEL': 1, 'SPLIT': 1, 'BLOCK_SIZE': 500.0,
        'OUTPUT_MODEL': str(tmp_path / 'm.onnx'), 'OUTPUT_HTML': str(tmp_path / 'm.html')}, 'BLOCK_SIZE')
    assert 'is geographic, so the block size is in degrees' in message
    empty = write_points(tmp_path / 'empty.gpkg', [], {'cu': [], 'b1': []})
    message = refused('correlation', {'INPUT': empty, 'TARGET': 'cu', 'OUTPUT': str(tmp_path / 'c.csv'),
                                      'OUTPUT_HTML': str(tmp_path / 'c.html')}, 'INPUT')
    assert 'the layer has no features' in message
