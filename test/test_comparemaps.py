"""comparemaps and core.inversion.mapcomparison on small rasters against numpy computed in the test:
statistics, difference map, masks and nodata, block independence, bad inputs, qgis_process."""
import json

import numpy as np
import pytest
from osgeo import gdal

from factories import make_grid, run_as_in_the_toolbox, write_test_raster
from rsgeochem.core.errors import InputError
from rsgeochem.core.inversion.mapcomparison import compare_maps
from rsgeochem.core.raster.blockio import RasterReader

NODATA = -9999.0
GRID = make_grid(37, 29)


def maps():
    """A map = 0.8 x reference + 1 + noise; nodata in a corner of each (different corners)."""
    rng = np.random.default_rng(3)
    reference = rng.gamma(3.0, 1.2, (29, 37))
    estimate = 0.8 * reference + 1.0 + rng.normal(0.0, 0.4, reference.shape)
    estimate[:3, :4] = NODATA
    reference[-2:, -5:] = NODATA
    return estimate, reference


def expected(estimate, reference, keep=None):
    """r, R², RMSE, bias by numpy over the pixels valid in both (and kept)."""
    both = (estimate != NODATA) & (reference != NODATA)
    if keep is not None:
        both &= keep
    a, b = estimate[both].astype(np.float32).astype(float), reference[both].astype(np.float32).astype(float)
    return {'N': both.sum(), 'R': np.corrcoef(a, b)[0, 1],
            'R2': 1 - np.sum((a - b) ** 2) / np.sum((b - b.mean()) ** 2),
            'RMSE': np.sqrt(np.mean((a - b) ** 2)), 'BIAS': np.mean(a - b)}


@pytest.fixture
def rasters(tmp_path):
    estimate, reference = maps()
    return (write_test_raster(tmp_path / 'estimate.tif', estimate, GRID, NODATA),
            write_test_raster(tmp_path / 'reference.tif', reference, GRID, NODATA), estimate, reference)


@pytest.mark.parametrize('memory_mb', [0.01, 64])  # 0.01 MB: blocks of a few rows
def test_statistics_and_difference_match_numpy(rasters, tmp_path, memory_mb):
    a_path, b_path, estimate, reference = rasters
    result = compare_maps(a_path, b_path, tmp_path / 'difference.tif', memory_mb=memory_mb)
    want = expected(estimate, reference)
    assert result.n == want['N']
    np.testing.assert_allclose([result.r, result.r2, result.rmse, result.bias],
                               [want['R'], want['R2'], want['RMSE'], want['BIAS']], rtol=1e-9)
    assert result.skipped == 12 + 10   # valid in one map only: 3x4 and 2x5 corners
    difference = gdal.Open(str(tmp_path / 'difference.tif')).ReadAsArray()
    both = (estimate != NODATA) & (reference != NODATA)
    want_difference = estimate.astype(np.float32) - reference.astype(np.float32)
    np.testing.assert_allclose(difference[both], want_difference[both], atol=1e-5)
    assert np.all(difference[~both] == NODATA)


def test_identical_maps_agree_perfectly_and_a_shift_is_pure_bias(rasters, tmp_path):
    _, b_path, _, reference = rasters
    same = compare_maps(b_path, b_path, tmp_path / 'same.tif')
    assert (same.r, same.r2, same.rmse, same.bias) == pytest.approx((1, 1, 0, 0), abs=1e-9)
    shifted = np.where(reference == NODATA, NODATA, reference + 0.5)
    shifted = write_test_raster(tmp_path / 'shifted.tif', shifted, GRID, NODATA)
    result = compare_maps(shifted, b_path, tmp_path / 'shift.tif')
    assert result.bias == pytest.approx(0.5, abs=1e-6) and result.rmse == pytest.approx(0.5, abs=1e-6)
    assert result.r == pytest.approx(1.0, abs=1e-9)


def test_mask_leaves_pixels_out(rasters, tmp_path):
    a_path, b_path, estimate, reference = rasters
    keep = np.ones(estimate.shape, dtype=np.float32)
    keep[10:20, :] = 0
    mask = RasterReader(write_test_raster(tmp_path / 'mask.tif', keep, GRID, None), 'MASK')
    result = compare_maps(a_path, b_path, tmp_path / 'difference.tif', mask=mask)
    want = expected(estimate, reference, keep == 1)
    assert result.n == want['N']
    np.testing.assert_allclose([result.r2, result.rmse], [want['R2'], want['RMSE']], rtol=1e-9)


def recording_feedback():
    """Feedback that keeps the warnings pushed to the log (in .warnings)."""
    from qgis.core import QgsProcessingFeedback

    class Recording(QgsProcessingFeedback):
        def __init__(self):
            super().__init__()
            self.warnings = []

        def pushWarning(self, text):  # noqa: N802 - QGIS API
            self.warnings.append(text)
    return Recording()


def image_grid_mask(tmp_path, keep, col, row):
    """A mask on the lattice of GRID whose pixel (row, col) is GRID's upper-left pixel."""
    x0, dx, _, y0, _, dy = GRID.geotransform
    grid = make_grid(keep.shape[1], keep.shape[0], origin=(x0 - col * dx, y0 - row * dy))
    return write_test_raster(tmp_path / 'image_mask.tif', keep, grid, None)


def test_mask_on_the_image_grid_for_maps_kriged_over_a_window_of_it(run_alg, rasters, tmp_path):
    """The maps are a window (rows 5..33, columns 7..43) of the image grid that MASK is on: the window's
    pixels of the mask are used as they are (numpy cut of the same window as the reference), and a mask
    that covers part of the maps masks the rest."""
    a_path, b_path, estimate, reference = rasters
    rng = np.random.default_rng(8)
    keep = (rng.uniform(size=(45, 50)) > 0.3).astype(np.float32)
    feedback = recording_feedback()
    result = run_alg('comparemaps', {'INPUT': a_path, 'REFERENCE': b_path, 'MASK': image_grid_mask(
        tmp_path, keep, 7, 5), 'OUTPUT': str(tmp_path / 'd.tif'), 'OUTPUT_HTML': str(tmp_path / 'r.html')},
        feedback)
    want = expected(estimate, reference, keep[5:34, 7:44] == 1)
    assert result['N'] == want['N'] and 0 < want['N'] < 0.8 * estimate.size
    np.testing.assert_allclose([result['R2'], result['RMSE'], result['BIAS']],
                               [want['R2'], want['RMSE'], want['BIAS']], rtol=1e-9)
    assert not any('MASK' in warning for warning in feedback.warnings)  # not resampled
    # a mask whose pixel (0, 0) is the maps' (row 10, column 20): the maps' rows < 10, columns < 20 are
    # outside it, hence masked, and the log says so
    partial = keep[:29, :30]
    feedback = recording_feedback()
    result = run_alg('comparemaps', {'INPUT': a_path, 'REFERENCE': b_path, 'MASK': image_grid_mask(
        tmp_path, partial, -20, -10), 'OUTPUT': str(tmp_path / 'd2.tif'),
        'OUTPUT_HTML': str(tmp_path / 'r2.html')}, feedback)
    covered = np.zeros(estimate.shape, dtype=bool)
    covered[10:, 20:] = partial[:19, :17] == 1
    assert result['N'] == expected(estimate, reference, covered)['N']
    assert any('covers only part of the input' in warning for warning in feedback.warnings)


def test_mask_on_the_lattice_that_misses_the_maps_is_refused(run_alg, rasters, tmp_path):
    from qgis.core import QgsProcessingException
    a_path, b_path, _, _ = rasters
    mask = image_grid_mask(tmp_path, np.ones((10, 10), np.float32), -40, 0)  # right of the maps
    with pytest.raises(QgsProcessingException, match='MASK.*does not overlap'):
        run_alg('comparemaps', {'INPUT': a_path, 'REFERENCE': b_path, 'MASK': mask,
                                'OUTPUT': str(tmp_path / 'd.tif'), 'OUTPUT_HTML': str(tmp_path / 'r.html')})
    assert not (tmp_path / 'd.tif').exists()


def test_maps_on_different_grids_or_bands_are_refused(rasters, tmp_path):
    a_path, b_path, estimate, _ = rasters
    other = write_test_raster(tmp_path / 'other.tif', estimate, make_grid(37, 29, pixel=20.0), NODATA)
    with pytest.raises(InputError, match='not on one grid') as error:
        compare_maps(a_path, other, tmp_path / 'd.tif')
    assert error.value.parameter == 'REFERENCE'
    with pytest.raises(InputError, match='band 2 does not exist') as error:
        compare_maps(a_path, b_path, tmp_path / 'd.tif', band_a=2)
    assert error.value.parameter == 'BAND'
    assert not (tmp_path / 'd.tif').exists()


def test_algorithm_through_processing(qgis_app, rasters, tmp_path):
    a_path, b_path, estimate, reference = rasters
    parameters = {'INPUT': a_path, 'REFERENCE': b_path, 'UNITS': '% RE2O3',
                  'OUTPUT': str(tmp_path / 'difference.tif'), 'OUTPUT_HTML': str(tmp_path / 'report.html')}
    result, loaded = run_as_in_the_toolbox('comparemaps', parameters, ['OUTPUT'])
    want = expected(estimate, reference)
    for key in ('R', 'R2', 'RMSE', 'BIAS'):
        assert result[key] == pytest.approx(want[key], rel=1e-9), key
    assert result['N'] == want['N']
    assert loaded['OUTPUT'].name == 'Difference estimate - reference (% RE2O3)'
    report = (tmp_path / 'report.html').read_text()
    assert report.count('<img') == 2 and '% RE2O3' in report


def test_algorithm_bad_grid_names_the_parameter(run_alg, rasters, tmp_path):
    from qgis.core import QgsProcessingException
    a_path, _, estimate, _ = rasters
    other = write_test_raster(tmp_path / 'other.tif', estimate[:20], make_grid(37, 20), NODATA)
    with pytest.raises(QgsProcessingException, match='REFERENCE'):
        run_alg('comparemaps', {'INPUT': a_path, 'REFERENCE': other, 'OUTPUT': str(tmp_path / 'd.tif'),
                                'OUTPUT_HTML': str(tmp_path / 'r.html')})
    assert not (tmp_path / 'd.tif').exists()


def test_qgis_process_run(qgis_process, rasters, tmp_path):
    a_path, b_path, estimate, reference = rasters
    result = qgis_process('run', 'rsgeochem:comparemaps', '--json', '--', f'INPUT={a_path}',
                          f'REFERENCE={b_path}', f'OUTPUT={tmp_path / "d.tif"}',
                          f'OUTPUT_HTML={tmp_path / "r.html"}')
    outputs = json.loads(result.stdout)['results']
    assert outputs['RMSE'] == pytest.approx(expected(estimate, reference)['RMSE'], rel=1e-9)
