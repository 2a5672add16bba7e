"""applyinversionmodel: ONNX models built here with onnx.helper whose outputs are known analytically
(linear models, a k x k mean compared with scipy.ndimage.uniform_filter), band-order checks,
nodata, mask, bad inputs, and the Processing/qgis_process glue."""
import threading

import numpy as np
import pytest
from osgeo import gdal
from scipy import ndimage

from factories import LogFeedback, make_grid, run_as_in_the_toolbox, write_test_raster
from rsgeochem.core.errors import CancelledError, InputError
from rsgeochem.core.inversion.inference import apply_model
from rsgeochem.core.inversion.onnx_metadata import write_metadata

onnx = pytest.importorskip('onnx')
pytest.importorskip('onnxruntime')
helper, numpy_helper = onnx.helper, onnx.numpy_helper

NODATA = -9999.0


def write_raster(path, array, descriptions=None, origin=(500000.0, 5600000.0)):
    grid = make_grid(array.shape[-1], array.shape[-2], origin=origin, pixel=10.0)
    return write_test_raster(path, np.asarray(array, np.float32), grid, NODATA, descriptions)


def read(path):
    dataset = gdal.Open(str(path))
    band = dataset.GetRasterBand(1)
    return band.ReadAsArray().astype(np.float64), band.GetNoDataValue(), band.GetDescription()


def save_model(path, nodes, input_shape, initializers, metadata=None):
    graph = helper.make_graph(
        nodes, 'test', [helper.make_tensor_value_info('x', onnx.TensorProto.FLOAT, input_shape)],
        [helper.make_tensor_value_info('y', onnx.TensorProto.FLOAT, ['N', 1])],
        [numpy_helper.from_array(v if isinstance(v, np.ndarray) else np.asarray(v, np.float32), k)
         for k, v in initializers.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 13)])
    model.ir_version = 8
    if metadata:
        write_metadata(model, metadata)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return str(path)


def linear_pixel_model(path, weights, bias, metadata=None):
    """y = x @ weights + bias for input (N, F)."""
    weights = np.asarray(weights, np.float32).reshape(-1, 1)
    nodes = [helper.make_node('MatMul', ['x', 'w'], ['xw']), helper.make_node('Add', ['xw', 'b'], ['y'])]
    return save_model(path, nodes, ['N', weights.shape[0]], {'w': weights, 'b': [bias]}, metadata)


def linear_tile_model(path, cell_weights, bias, metadata=None):
    """y = sum over the S² cells of the (N, 1, S, S) tile of cell_weights * cell + bias."""
    side = int(round(np.sqrt(len(cell_weights))))
    nodes = [helper.make_node('Flatten', ['x'], ['flat'], axis=1),
             helper.make_node('MatMul', ['flat', 'w'], ['xw']), helper.make_node('Add', ['xw', 'b'], ['y'])]
    return save_model(path, nodes, ['N', 1, side, side],
                      {'w': np.reshape(cell_weights, (-1, 1)).astype(np.float32), 'b': [bias]}, metadata)


def patch_mean_model(path, n_features, k, metadata=None):
    """y = mean over all bands and the k x k neighbourhood of input (N, F, k, k)."""
    nodes = [helper.make_node('ReduceMean', ['x'], ['m'], axes=[1, 2, 3], keepdims=0),
             helper.make_node('Reshape', ['m', 'shape'], ['y'])]
    return save_model(path, nodes, ['N', n_features, k, k], {'shape': np.array([-1, 1], np.int64)}, metadata)


@pytest.fixture
def bands3(tmp_path):
    """A 3-band raster (30 x 41) described 'nir', 'red', 'green' with one nodata pixel in band 2."""
    rng = np.random.default_rng(5)
    data = rng.uniform(0.0, 0.5, size=(3, 30, 41)).astype(np.float32)
    data[1, 4, 7] = NODATA
    return write_raster(tmp_path / 'bands.tif', data, ['nir', 'red', 'green']), data


def test_pixel_model_matches_bands_by_description(tmp_path, bands3):
    path, data = bands3
    weights, bias = [2.0, -3.0, 0.5], 0.25   # features green, nir, red
    model = linear_pixel_model(tmp_path / 'lin.onnx', weights, bias,
                               {'features': ['green', 'NIR', 'red'], 'input_layout': 'pixel',
                                'target_field': 'Cu', 'target_units': 'ppm'})
    result = apply_model(path, model, tmp_path / 'out.tif')
    out, nodata, description = read(tmp_path / 'out.tif')
    expected = 2.0 * data[2] - 3.0 * data[0] + 0.5 * data[1] + 0.25   # by hand, in band order
    expected[4, 7] = NODATA
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    assert (nodata, description) == (NODATA, 'Cu (ppm)')
    assert result.bands == [3, 1, 2]
    assert (result.predicted, result.nodata) == (30 * 41 - 1, 1)


def test_features_named_like_surfacesamples_fields_match_band_descriptions(tmp_path):
    """A model trained on a surfacesamples layer names its features after field-safe band names
    ("B4 DOS1 surface reflectance" -> "B4_DOS1_surface_reflectance")."""
    data = np.stack([np.full((3, 4), value, np.float32) for value in (1.0, 2.0)])
    path = write_raster(tmp_path / 'dos.tif', data, ['B3 DOS1 surface reflectance', 'B4 (nir) DOS1'])
    model = linear_pixel_model(tmp_path / 'lin.onnx', [10.0, 1.0], 0.0,
                               {'features': ['B4_nir_DOS1', 'B3_DOS1_surface_reflectance'],
                                'input_layout': 'pixel'})
    result = apply_model(path, model, tmp_path / 'out.tif')
    assert result.bands == [2, 1]
    np.testing.assert_allclose(read(tmp_path / 'out.tif')[0], 10.0 * 2.0 + 1.0 * 1.0)


def test_tiled_model_fills_features_cyclically(tmp_path, bands3):
    path, data = bands3
    cell_weights = np.linspace(-1.0, 2.0, 16)
    model = linear_tile_model(tmp_path / 'tile.onnx', cell_weights, -0.5,
                              {'features': ['nir', 'red', 'green'], 'input_layout': 'tiled'})
    apply_model(path, model, tmp_path / 'out.tif', memory_mb=1)
    out, _, _ = read(tmp_path / 'out.tif')
    # contract: cell i (row-major) holds feature i mod F, so feature j weighs the sum of its cells
    effective = [sum(cell_weights[i] for i in range(16) if i % 3 == j) for j in range(3)]
    expected = sum(effective[j] * data[j].astype(np.float64) for j in range(3)) - 0.5
    valid = data[1] != NODATA
    np.testing.assert_allclose(out[valid], expected[valid], rtol=1e-5, atol=1e-5)
    assert out[4, 7] == NODATA


def test_tiled_model_of_20_bands_takes_an_8x8_tile_and_refuses_another_count(tmp_path):
    rng = np.random.default_rng(6)
    data = rng.uniform(0.0, 0.5, size=(20, 9, 11)).astype(np.float32)
    path = write_raster(tmp_path / 'stack.tif', data)
    cell_weights = rng.normal(size=64)
    model = linear_tile_model(tmp_path / 'tile.onnx', cell_weights, 0.25)  # no metadata
    apply_model(path, model, tmp_path / 'out.tif', bands=list(range(1, 21)))
    effective = [cell_weights[j::20].sum() for j in range(20)]  # cell i holds band i mod 20
    expected = np.tensordot(effective, data.astype(np.float64), axes=1) + 0.25
    np.testing.assert_allclose(read(tmp_path / 'out.tif')[0], expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(InputError, match='8x8 tile takes 17 to 64 bands, not 16') as error:
        apply_model(path, model, tmp_path / 'other.tif', bands=list(range(1, 17)))
    assert error.value.parameter == 'BANDS'


def test_one_pixel_patch_model(tmp_path, bands3):
    path, data = bands3
    model = patch_mean_model(tmp_path / 'mean.onnx', 2, 1)   # no metadata: layout from the shape
    apply_model(path, model, tmp_path / 'out.tif', bands=[1, 3])
    expected = (data[0] + data[2].astype(np.float64)) / 2
    np.testing.assert_allclose(read(tmp_path / 'out.tif')[0], expected, rtol=1e-6)


@pytest.mark.parametrize('memory_mb', [1, 64])
def test_patch_mean_equals_uniform_filter_across_blocks(tmp_path, memory_mb):
    rng = np.random.default_rng(7)
    data = rng.uniform(0.0, 10.0, size=(2, 53, 2000)).astype(np.float32)
    data[0, 30, 100] = NODATA
    path = write_raster(tmp_path / 'in.tif', data, ['a', 'b'])
    model = patch_mean_model(tmp_path / 'mean.onnx', 2, 5,
                             {'features': ['a', 'b'], 'input_layout': 'patch', 'patch_size': 5})
    fractions = []
    apply_model(path, model, tmp_path / 'out.tif', memory_mb=memory_mb, progress=fractions.append)
    out, _, _ = read(tmp_path / 'out.tif')
    expected = ndimage.uniform_filter(data.astype(np.float64), size=(1, 5, 5)).mean(axis=0)
    # the full 5 x 5 neighbourhood must be valid and inside the raster
    expected[:2], expected[-2:], expected[:, :2], expected[:, -2:] = NODATA, NODATA, NODATA, NODATA
    expected[28:33, 98:103] = NODATA
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-4)
    assert (len(fractions) > 5) == (memory_mb == 1) and fractions[-1] == 1.0


def test_mask_and_explicit_band_order(tmp_path, bands3):
    path, data = bands3
    mask = np.ones((30, 41), np.float32)
    mask[10:20, 5:9] = 0
    mask[0, 0] = NODATA
    mask_path = write_raster(tmp_path / 'mask.tif', mask)
    model = linear_pixel_model(tmp_path / 'lin.onnx', [1.0, 10.0], 0.0)  # no metadata
    result = apply_model(path, model, tmp_path / 'out.tif', bands=[3, 1], mask_path=mask_path)
    out, _, description = read(tmp_path / 'out.tif')
    expected = data[2] + 10.0 * data[0].astype(np.float64)
    expected[10:20, 5:9] = NODATA
    expected[0, 0] = NODATA
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)   # band 2's nodata is unused
    assert description == 'prediction' and result.nodata == 41


def test_raster_without_descriptions_taken_in_order(tmp_path):
    data = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    path = write_raster(tmp_path / 'in.tif', data)
    model = linear_pixel_model(tmp_path / 'lin.onnx', [1.0, -1.0], 100.0, {'features': ['b4', 'b8']})
    result = apply_model(path, model, tmp_path / 'out.tif')
    np.testing.assert_allclose(read(tmp_path / 'out.tif')[0], np.full((3, 4), 100.0 - 12.0))
    assert result.bands == [1, 2] and 'no band descriptions' in result.notes[0]


@pytest.mark.parametrize('kwargs, key, words', [
    ({}, 'BANDS', 'blue not found'),                       # descriptions do not name the features
    ({'bands': [1, 2]}, 'BANDS', 'give exactly 3'),
    ({'bands': [1, 2, 4]}, 'BANDS', 'do not exist'),
])
def test_band_order_errors(tmp_path, bands3, kwargs, key, words):
    path, _ = bands3
    model = linear_pixel_model(tmp_path / 'lin.onnx', [1.0, 1.0, 1.0], 0.0,
                               {'features': ['blue', 'red', 'nir']})
    with pytest.raises(InputError) as error:
        apply_model(path, model, tmp_path / 'out.tif', **kwargs)
    assert error.value.parameter == key and words in str(error.value)
    assert not (tmp_path / 'out.tif').exists()


def test_nodata_everywhere_is_an_error(tmp_path):
    path = write_raster(tmp_path / 'in.tif', np.full((1, 4, 5), NODATA))
    model = linear_pixel_model(tmp_path / 'lin.onnx', [1.0], 0.0)
    with pytest.raises(InputError, match='nodata everywhere') as error:
        apply_model(path, model, tmp_path / 'out.tif', bands=[1])
    assert error.value.parameter == 'INPUT' and not (tmp_path / 'out.tif').exists()


def test_model_without_metadata_needs_bands(tmp_path, bands3):
    path, _ = bands3
    model = linear_pixel_model(tmp_path / 'lin.onnx', [1.0, 1.0, 1.0], 0.0)
    with pytest.raises(InputError, match='no rsgeochem metadata') as error:
        apply_model(path, model, tmp_path / 'out.tif')
    assert error.value.parameter == 'BANDS'


@pytest.mark.parametrize('content', [b'not a model at all\n', b''])
def test_non_onnx_file_names_model(tmp_path, bands3, content):
    path, _ = bands3
    (tmp_path / 'fake.onnx').write_bytes(content)
    with pytest.raises(InputError) as error:
        apply_model(path, tmp_path / 'fake.onnx', tmp_path / 'out.tif', bands=[1])
    assert error.value.parameter == 'MODEL'


def test_mask_on_another_grid_and_cancel(tmp_path, bands3):
    path, _ = bands3
    model = linear_pixel_model(tmp_path / 'lin.onnx', [1.0], 0.0)
    shifted = write_raster(tmp_path / 'mask.tif', np.ones((30, 41)), origin=(500010.0, 5600000.0))
    with pytest.raises(InputError) as error:
        apply_model(path, model, tmp_path / 'out.tif', bands=[1], mask_path=shifted)
    assert error.value.parameter == 'MASK'
    with pytest.raises(CancelledError):
        apply_model(path, model, tmp_path / 'out.tif', bands=[1], memory_mb=1, cancel=lambda: True)
    assert list(tmp_path.glob('*out*')) == []


def test_algorithm_keeps_the_given_band_order_and_masks(tmp_path, bands3, qgis_app):
    path, data = bands3
    mask = np.ones((30, 41), np.float32)
    mask[:5] = 0
    metadata = {'features': ['green', 'nir', 'red'], 'target_field': 'Cu', 'target_units': 'ppm'}
    model = linear_pixel_model(tmp_path / 'lin.onnx', [1.0, 10.0, 100.0], 0.0, metadata)
    result, loaded = run_as_in_the_toolbox(
        'applyinversionmodel', {'INPUT': path, 'MODEL': model, 'BANDS': [3, 1, 2],
                                'MASK': write_raster(tmp_path / 'mask.tif', mask), 'THREADS': 1,
                                'OUTPUT': str(tmp_path / 'out.tif')}, ['OUTPUT'])
    assert loaded['OUTPUT'].name == 'Predicted Cu (ppm)'
    out, _, _ = read(result['OUTPUT'])
    expected = data[2] + 10.0 * data[0].astype(np.float64) + 100.0 * data[1]
    expected[:5] = NODATA
    np.testing.assert_allclose(out, expected, rtol=1e-5)


@pytest.mark.parametrize('name, content', [('fake.onnx', b'GIF89a not a model'), ('model.txt', b'x')])
def test_algorithm_refuses_non_onnx_file(tmp_path, bands3, run_alg, name, content):
    from qgis.core import QgsProcessingException
    (tmp_path / name).write_bytes(content)
    with pytest.raises(QgsProcessingException, match='MODEL'):
        run_alg('applyinversionmodel', {'INPUT': bands3[0], 'MODEL': str(tmp_path / name), 'BANDS': [1],
                                        'OUTPUT': str(tmp_path / 'out.tif')})
    assert not (tmp_path / 'out.tif').exists()


def test_qgis_process_applies_model_with_metadata(tmp_path, bands3, qgis_process):
    path, data = bands3
    model = linear_pixel_model(tmp_path / 'lin.onnx', [1.0, -1.0], 0.5, {'features': ['red', 'nir']})
    qgis_process('run', 'rsgeochem:applyinversionmodel', '--', f'INPUT={path}', f'MODEL={model}',
                 f'OUTPUT={tmp_path / "out.tif"}')
    out, _, _ = read(tmp_path / 'out.tif')
    np.testing.assert_allclose(out[10:], (data[1] - data[0].astype(np.float64) + 0.5)[10:], rtol=1e-5)
    qgis_process('run', 'rsgeochem:applyinversionmodel', '--', f'INPUT={path}', f'MODEL={model}',
                 'BANDS=3;1', f'OUTPUT={tmp_path / "swapped.tif"}')
    out, _, _ = read(tmp_path / 'swapped.tif')
    np.testing.assert_allclose(out, data[2] - data[0].astype(np.float64) + 0.5, rtol=1e-5)


def test_runs_out_of_the_box_with_the_shipped_model(qgis_app, tmp_path):
    """MODEL left out: the shipped CNN maps the sample image; checked against the simulated truth. The
    log and the layer name say it is the demonstration model."""
    from paths import CHECKOUT
    sample = CHECKOUT / 'resources' / 'sample'
    output = tmp_path / 're2o3.tif'
    feedback = LogFeedback()
    parameters = {'INPUT': str(sample / 'gf2like_surface_reflectance.tif'), 'OUTPUT': str(output)}
    _, loaded = run_as_in_the_toolbox('applyinversionmodel', parameters, ['OUTPUT'], feedback)
    predicted, nodata, description = read(output)
    truth_dataset = gdal.Open(str(sample / 'simulated_re2o3_truth.tif'))
    truth_band = truth_dataset.GetRasterBand(1)
    truth = truth_band.ReadAsArray().astype(np.float64)
    both = (predicted != nodata) & (truth != truth_band.GetNoDataValue())
    assert 're2o3' in description.lower()
    assert np.corrcoef(predicted[both], truth[both])[0, 1] > 0.6
    assert loaded['OUTPUT'].name == 'RE2O3 predicted (%) - DEMO model, simulated data'
    assert any('DEMONSTRATION model' in line for line in feedback.lines)
    assert predicted[both].min() >= 0.0


def test_negative_predictions_are_set_to_zero_and_counted(tmp_path, bands3, run_alg):
    """y = green - 0.25 on green values uniform in 0-0.5: about half the predictions are negative."""
    path, data = bands3
    model = linear_pixel_model(tmp_path / 'lin.onnx', [1.0], -0.25, {'features': ['green']})
    raw = data[2].astype(np.float64) - 0.25
    result = apply_model(path, model, tmp_path / 'clipped.tif', minimum=0.0)
    assert result.clipped == np.count_nonzero(raw < 0)
    assert result.lowest == pytest.approx(raw.min(), abs=1e-6)
    np.testing.assert_allclose(read(tmp_path / 'clipped.tif')[0], np.maximum(raw, 0.0), atol=1e-6)
    run_alg('applyinversionmodel', {'INPUT': path, 'MODEL': model, 'CLIP_NEGATIVE': False,
                                    'OUTPUT': str(tmp_path / 'raw.tif')})
    np.testing.assert_allclose(read(tmp_path / 'raw.tif')[0], raw, atol=1e-6)


def test_digital_numbers_need_calibration_first(run_alg, tmp_path):
    """The sample GF-2 DN image (UInt16) with the shipped reflectance model: "calibrate first", not a
    request for band numbers."""
    from qgis.core import QgsProcessingException

    from paths import CHECKOUT
    image = CHECKOUT / 'resources' / 'sample' / 'gf2like_pms1_dn.tif'
    with pytest.raises(QgsProcessingException, match='^INPUT: .*UInt16.*calibrate the image first'):
        run_alg('applyinversionmodel', {'INPUT': str(image), 'OUTPUT': str(tmp_path / 'out.tif')})


def test_thread_counts_give_identical_predictions(tmp_path):
    """Single-threaded sessions, one per thread, taking the batches of several blocks in turn."""
    data = np.random.default_rng(3).uniform(0.0, 1.0, size=(2, 300, 100)).astype(np.float32)
    path = write_raster(tmp_path / 'in.tif', data)
    model = linear_pixel_model(tmp_path / 'lin.onnx', [2.0, -1.0], 0.5)
    outputs = []
    for threads in (1, 3):
        result = apply_model(path, model, tmp_path / f'out{threads}.tif', bands=[1, 2], threads=threads,
                             memory_mb=1)
        assert result.blocks > 1 and result.batch < data[0].size / result.blocks
        outputs.append(read(tmp_path / f'out{threads}.tif')[0])
    np.testing.assert_array_equal(outputs[0], outputs[1])
    np.testing.assert_allclose(outputs[0], 2.0 * data[0] - data[1] + 0.5, rtol=1e-5, atol=1e-6)


def test_model_failing_at_run_time_names_model_and_stops_its_threads(tmp_path, bands3):
    path, _ = bands3
    # a Reshape to 7 rows fails for every batch of another size
    model = save_model(tmp_path / 'seven.onnx', [helper.make_node('Reshape', ['x', 'shape'], ['y'])],
                       ['N', 1], {'shape': np.array([7, 1], np.int64)})
    with pytest.raises(InputError, match='could not run the model') as error:
        apply_model(path, model, tmp_path / 'out.tif', bands=[1], threads=3)
    assert error.value.parameter == 'MODEL' and not (tmp_path / 'out.tif').exists()
    assert not [thread.name for thread in threading.enumerate() if thread.name.startswith('rsgeochem-apply')]
