"""accuracyassessment and core.pointvalues on a hand-built raster with hand-computed metrics."""
import math

import numpy as np
import pytest
from osgeo import osr

from factories import make_grid, pixel_centre, run_as_in_the_toolbox, write_points, write_test_raster
from rsgeochem.core.errors import InputError
from rsgeochem.core.raster import blockio
from rsgeochem.core.raster.pointvalues import sample_points

NODATA = -9999.0
# predicted raster, 3 rows x 4 columns of 30 m; pixel (1, 3) is nodata
PREDICTED = np.array([[1.5, 2.6, 2.5, 4.5],
                      [5.0, 9.0, 9.0, NODATA],
                      [9.0, 9.0, 9.0, 9.0]], dtype=np.float32)
GRID = make_grid(4, 3)
# measured 1..5 at pixels holding 1.5, 2.6, 2.5, 4.5, 5.0: residuals .5 .6 -.5 .5 0
MEASURED_PIXELS = [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0)]
# by hand: SSres = .25+.36+.25+.25 = 1.11, SStot = 10, SD (n-1) = sqrt(2.5), IQR (linear) = 4 - 2,
# ranks of predicted 1 3 2 4 5 -> sum d^2 = 2 -> rho = 1 - 6*2 / (5*24)
EXPECTED = {'N': 5, 'R2': 1 - 1.11 / 10, 'RMSE': math.sqrt(1.11 / 5), 'BIAS': 1.1 / 5,
            'RPD': math.sqrt(2.5) / math.sqrt(1.11 / 5), 'RPIQ': 2 / math.sqrt(1.11 / 5), 'SPEARMAN': 0.9}


def to_wgs84(points):
    """UTM 32N (the grid's CRS) -> (lon, lat) with GDAL/PROJ."""
    source, target = osr.SpatialReference(), osr.SpatialReference()
    source.ImportFromEPSG(32632)
    target.ImportFromEPSG(4326)
    target.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    transform = osr.CoordinateTransformation(source, target)
    return [transform.TransformPoint(x, y)[:2] for x, y in points]


@pytest.fixture
def samples(tmp_path, qgis_app):
    """Raster and points in EPSG:4326: 5 usable, 1 on nodata, 1 outside, 1 NULL measured."""
    raster = write_test_raster(tmp_path / 'pred.tif', PREDICTED, GRID, NODATA)
    xy = [pixel_centre(GRID, *pixel) for pixel in MEASURED_PIXELS]
    xy += [pixel_centre(GRID, 1, 3), pixel_centre(GRID, 5, 1), pixel_centre(GRID, 2, 2)]
    measured = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, None]
    points = write_points(tmp_path / 'points.gpkg', to_wgs84(xy), {'re2o3': measured, 'id': list(range(8))},
                          epsg=4326)
    return raster, points


def test_sample_points_reads_pixels_and_flags_outside_and_nodata(tmp_path):
    raster = write_test_raster(tmp_path / 'pred.tif', PREDICTED, GRID, NODATA)
    x0, y0 = GRID.geotransform[0], GRID.geotransform[3]
    # a point on the corner between pixels (0, 0) and (1, 1) belongs to (1, 1); right edge is outside
    x = np.array([x0 + 1.0, x0 + 30.0, x0 + 119.0, x0 + 120.0, x0 - 1.0])
    y = np.array([y0 - 1.0, y0 - 30.0, y0 - 31.0, y0 - 1.0, y0 - 1.0])
    values = sample_points(raster, x, y)
    np.testing.assert_array_equal(values.values[:, 0], [1.5, 9.0, np.nan, np.nan, np.nan])
    np.testing.assert_array_equal(values.inside, [True, True, True, False, False])
    assert (values.outside_count, values.nodata_count) == (2, 1)
    with pytest.raises(InputError, match='do not exist'):
        sample_points(raster, x, y, bands=[2], parameter='BAND')


def test_sample_points_over_many_tiles_and_bands_in_any_order(tmp_path):
    """Points visited tile by tile give each point the values of its own pixel in every band."""
    data = np.arange(3 * 50 * 70, dtype=np.float32).reshape(3, 50, 70)
    grid = make_grid(70, 50)
    with blockio.creation_options(['BLOCKXSIZE=16', 'BLOCKYSIZE=16']):
        raster = blockio.write_raster(tmp_path / 'tiled.tif', grid, data)
    rng = np.random.default_rng(3)
    rows, cols = rng.integers(0, 50, 200), rng.integers(0, 70, 200)
    x, y = np.transpose([pixel_centre(grid, row, col) for row, col in zip(rows, cols)])
    values = sample_points(raster, x, y)
    np.testing.assert_array_equal(values.values, data[:, rows, cols].T)
    reordered = sample_points(raster, x, y, bands=[3, 1])
    np.testing.assert_array_equal(reordered.values, data[[2, 0]][:, rows, cols].T)


def test_metrics_match_hand_computation(tmp_path, samples):
    raster, points = samples
    result, loaded = run_as_in_the_toolbox('accuracyassessment', {
        'INPUT': raster, 'BAND': 1, 'POINTS': points, 'FIELD': 're2o3',
        'OUTPUT': str(tmp_path / 'residuals.gpkg'), 'OUTPUT_HTML': str(tmp_path / 'report.html')}, ['OUTPUT'])
    assert loaded['OUTPUT'].name == 'Residuals of predicted re2o3'
    for key, value in EXPECTED.items():
        assert result[key] == pytest.approx(value, rel=1e-6), key
    html = (tmp_path / 'report.html').read_text()
    assert 'data:image/png;base64' in html and '1 outside the raster' in html and '1 on nodata' in html

    from qgis.core import NULL, QgsVectorLayer
    layer = QgsVectorLayer(result['OUTPUT'], 'residuals', 'ogr')
    rows = {f['id']: (f['measured'], f['predicted'], f['residual']) for f in layer.getFeatures()}
    assert len(rows) == 7   # the NULL measurement is not a usable point
    assert rows[1] == pytest.approx((2.0, 2.6, 0.6), abs=1e-6)
    assert rows[5] == (6.0, NULL, NULL)   # on the nodata pixel


def test_too_few_points_names_points(tmp_path, qgis_app, run_alg):
    from qgis.core import QgsProcessingException
    raster = write_test_raster(tmp_path / 'pred.tif', PREDICTED, GRID, NODATA)
    far = [pixel_centre(GRID, 40, 40), pixel_centre(GRID, 0, 0), pixel_centre(GRID, 1, 3)]
    points = write_points(tmp_path / 'p.gpkg', far, {'v': [1.0, 2.0, 3.0]})
    with pytest.raises(QgsProcessingException, match='POINTS.*only 1 of 3'):
        run_alg('accuracyassessment', {'INPUT': raster, 'POINTS': points, 'FIELD': 'v',
                                       'OUTPUT_HTML': str(tmp_path / 'r.html')})


def test_qgis_process_reports_metrics(tmp_path, samples, qgis_process):
    import json
    raster, points = samples
    result = qgis_process('run', 'rsgeochem:accuracyassessment', '--json', '--', f'INPUT={raster}',
                          f'POINTS={points}', 'FIELD=re2o3', f'OUTPUT_HTML={tmp_path / "r.html"}')
    results = json.loads(result.stdout)['results']
    assert results['N'] == 5
    assert results['RMSE'] == pytest.approx(EXPECTED['RMSE'], rel=1e-6)
