"""Surface mask: NDVI/NDWI thresholds on analytic values, polygons in another CRS, real Sentinel-2,
the mask-block helper and bad inputs."""
import numpy as np
import pytest
from osgeo import gdal, osr

from factories import LogFeedback
from rsgeochem.core.imagery.mask import PolygonBurner, read_mask_block, surface_mask
from rsgeochem.core.raster import blockio

S2 = 'sentinel2/s2_para_subset_80x64.tif'
X0, Y0, PIXEL = 400000.0, 2800000.0, 4.0


def utm_wkt():
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32650)
    return srs.ExportToWkt()


def grid(width, height):
    return blockio.Grid(width, height, (X0, PIXEL, 0.0, Y0, 0.0, -PIXEL), utm_wkt())


def rectangle_wkt(x_min, y_min, x_max, y_max):
    return f'POLYGON(({x_min} {y_min},{x_max} {y_min},{x_max} {y_max},{x_min} {y_max},{x_min} {y_min}))'


def pixel_box(col0, col1, row0, row1, inset):
    """UTM rectangle over columns col0..col1-1 and rows row0..row1-1, shrunk by `inset` metres."""
    return (X0 + col0 * PIXEL + inset, Y0 - row1 * PIXEL + inset, X0 + col1 * PIXEL - inset,
            Y0 - row0 * PIXEL - inset)


def ma(values):
    return np.ma.asarray(np.array(values, dtype=float))


def test_ndvi_ndwi_thresholds_on_analytic_values():
    red = ma([[0.10, 0.20, 0.05, 0.0]])
    nir = ma([[0.50, 0.25, 0.10, 0.0]])
    green = ma([[0.10, 0.20, 0.30, 0.0]])
    valid = np.array([[True, True, True, True]])
    # NDVI: 0.4/0.6 = 0.667 (veg), 0.05/0.45 = 0.111, 0.05/0.15 = 0.333 (veg at 0.3), undefined
    # NDWI: -0.667, -0.111, 0.2/0.4 = 0.5 (water), undefined
    mask, counts = surface_mask(valid, red, nir, green, ndvi_threshold=0.3, ndwi_threshold=0.0)
    assert mask.tolist() == [[0, 1, 0, 1]]
    assert (counts.valid, counts.vegetation, counts.water, counts.masked) == (4, 2, 1, 2)
    mask, counts = surface_mask(valid, red, nir, green, ndvi_threshold=0.35, ndwi_threshold=None)
    assert mask.tolist() == [[0, 1, 1, 1]] and counts.fraction('masked') == 0.25
    mask, _ = surface_mask(np.array([[False, True, True, True]]), red, nir, green, 0.3, 0.0)
    assert mask.tolist() == [[255, 1, 0, 1]]


def test_dark_nir_water_rule_on_analytic_values():
    # turbid river: green 0.06, NIR 0.065 -> NDWI -0.04 (missed by NDWI > 0) but NIR < 0.07;
    # clear water (NDWI 0.5); forest (NIR 0.30); dark NIR but nodata; NIR exactly at the threshold
    # (NDWI -0.077: kept)
    green = ma([[0.06, 0.06, 0.05, 0.08, 0.06]])
    nir = ma([[0.065, 0.02, 0.30, 0.01, 0.07]])
    red = ma([[0.07, 0.03, 0.03, 0.01, 0.07]])
    valid = np.array([[True, True, True, False, True]])
    mask, counts = surface_mask(valid, red, nir, green, ndwi_threshold=0.0, nir_water_threshold=0.07)
    assert mask.tolist() == [[0, 0, 1, 255, 1]]
    assert (counts.valid, counts.water, counts.masked) == (4, 2, 2)  # the clear water pixel counted once
    mask, counts = surface_mask(valid, red, nir, green, ndwi_threshold=0.0)  # rule off: NDWI only
    assert mask.tolist() == [[1, 0, 1, 255, 1]] and counts.water == 1
    mask, counts = surface_mask(valid, red, nir, green, nir_water_threshold=0.07)  # NIR rule alone
    assert mask.tolist() == [[0, 0, 1, 255, 1]] and counts.water == 2


def test_nir_water_threshold_masks_turbid_water(run_alg, tmp_path):
    """A 'river' column (green 0.09, NIR 0.05: NDWI 0.29) and a 'sediment-laden' one (green 0.06,
    NIR 0.07: NDWI -0.077, missed by NDWI > 0) beside land (NIR 0.3)."""
    bands = np.empty((4, 4, 6))
    bands[:] = np.array([0.03, 0.05, 0.04, 0.30])[:, None, None]          # land
    bands[:, :, 1] = np.array([0.06, 0.09, 0.07, 0.05])[:, None]           # NDWI 0.286
    bands[:, :, 4] = np.array([0.06, 0.06, 0.07, 0.07])[:, None]           # NDWI -0.077
    source = blockio.write_raster(tmp_path / 'img.tif', grid(6, 4), bands)
    common = {'INPUT': source, 'MASK_VEGETATION': False, 'NDWI_THRESHOLD': 0.0}
    ndwi_only = run_alg('surfacemask', {**common, 'OUTPUT': str(tmp_path / 'a.tif')})
    expected = np.ones((4, 6))
    expected[:, 1] = 0
    np.testing.assert_array_equal(gdal.Open(ndwi_only['OUTPUT']).ReadAsArray(), expected)
    both = run_alg('surfacemask', {**common, 'NIR_WATER_THRESHOLD': 0.08, 'OUTPUT': str(tmp_path / 'b.tif')})
    expected[:, 4] = 0
    np.testing.assert_array_equal(gdal.Open(both['OUTPUT']).ReadAsArray(), expected)
    assert both['WATER_FRACTION'] == pytest.approx(8 / 24)
    off = run_alg('surfacemask', {**common, 'MASK_WATER': False, 'MASK_VEGETATION': True,
                                  'NDVI_THRESHOLD': 0.9, 'NIR_WATER_THRESHOLD': 0.08,
                                  'OUTPUT': str(tmp_path / 'c.tif')})
    assert off['WATER_FRACTION'] == 0.0  # the NIR rule belongs to MASK_WATER


@pytest.mark.parametrize('all_touched, first_col', [(True, 3), (False, 4)])
def test_polygon_burn_all_touched_or_centre(all_touched, first_col):
    # polygon over columns 3-6 / rows 2-4 but starting 3 m into column 3 (past its centre at 2 m)
    x_min, y_min, x_max, y_max = pixel_box(3, 7, 2, 5, 1.0)
    burner = PolygonBurner([rectangle_wkt(x_min + 2.0, y_min, x_max, y_max)], utm_wkt(), all_touched)
    expected = np.zeros((8, 10), dtype=bool)
    expected[2:5, first_col:7] = True
    whole = burner.burn(grid(10, 8), blockio.Window(0, 8))
    np.testing.assert_array_equal(whole, expected)
    # block-wise with a halo reproduces the same rows
    window = blockio.block_windows(8, 3, halo=1)[1]
    rows = slice(window.read_row, window.read_row + window.read_rows)
    np.testing.assert_array_equal(burner.burn(grid(10, 8), window), expected[rows])


def test_read_mask_block_keeps_nonzero_and_drops_nodata(tmp_path):
    path = blockio.write_raster(tmp_path / 'm.tif', grid(3, 2), np.array([[1, 0, 255], [1, 1, 0]]),
                                nodata=255)
    keep = read_mask_block(blockio.RasterReader(path, 'MASK'), blockio.Window(0, 2))
    assert keep.tolist() == [[True, False, False], [True, True, False]]


def test_sentinel2_mask_matches_published_thresholds(run_alg, test_data, tmp_path):
    source = str(test_data / S2)
    result = run_alg('surfacemask', {'INPUT': source, 'GREEN_BAND': 3, 'RED_BAND': 4, 'NIR_BAND': 8,
                                     'NDVI_THRESHOLD': 0.3, 'NDWI_THRESHOLD': 0.0,
                                     'OUTPUT': str(tmp_path / 'mask.tif')})
    bands = gdal.Open(source).ReadAsArray().astype(np.float64)
    green, red, nir = bands[2], bands[3], bands[7]
    expected_masked = ((nir - red) / (nir + red) > 0.3) | ((green - nir) / (green + nir) > 0.0)
    output = gdal.Open(result['OUTPUT'])
    np.testing.assert_array_equal(output.ReadAsArray(), np.where(expected_masked, 0, 1))
    assert output.GetRasterBand(1).GetNoDataValue() == 255
    assert result['MASKED_FRACTION'] == pytest.approx(expected_masked.mean(), abs=1e-12)
    assert 0.2 < result['WATER_FRACTION'] < 0.8 and 0.2 < result['VEGETATION_FRACTION'] < 0.8


def test_polygons_in_another_crs_are_reprojected(run_alg, tmp_path):
    from qgis.core import QgsFeature, QgsGeometry, QgsVectorLayer
    bands = np.full((4, 8, 10), 0.2)
    bands[:, 0, 0] = -9999.0
    source = blockio.write_raster(tmp_path / 'img.tif', grid(10, 8), bands)
    utm, wgs84 = osr.SpatialReference(), osr.SpatialReference()
    utm.ImportFromWkt(utm_wkt())
    wgs84.ImportFromEPSG(4326)
    wgs84.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    to_wgs84 = osr.CoordinateTransformation(utm, wgs84)
    x_min, y_min, x_max, y_max = pixel_box(3, 7, 2, 5, 1.0)
    corners = [to_wgs84.TransformPoint(x, y)[:2] for x, y in
               ((x_min, y_min), (x_max, y_min), (x_max, y_max), (x_min, y_max), (x_min, y_min))]
    layer = QgsVectorLayer('Polygon?crs=EPSG:4326', 'villages', 'memory')
    feature = QgsFeature()
    ring = ','.join(f'{x!r} {y!r}' for x, y in corners)
    feature.setGeometry(QgsGeometry.fromWkt(f'POLYGON(({ring}))'))
    layer.dataProvider().addFeatures([feature])
    feedback = LogFeedback()
    result = run_alg('surfacemask', {'INPUT': source, 'MASK_VEGETATION': False, 'MASK_WATER': False,
                                     'EXCLUDE_POLYGONS': layer, 'OUTPUT': str(tmp_path / 'mask.tif')},
                     feedback=feedback)
    expected = np.ones((8, 10))
    expected[2:5, 3:7] = 0
    expected[0, 0] = 255
    np.testing.assert_array_equal(gdal.Open(result['OUTPUT']).ReadAsArray(), expected)
    assert result['POLYGON_FRACTION'] == pytest.approx(12 / 79)
    assert any('reprojected from EPSG:4326' in line for line in feedback.lines)


def test_bad_inputs_name_the_parameter(run_alg, tmp_path):
    from qgis.core import QgsProcessingException
    empty = blockio.write_raster(tmp_path / 'empty.tif', grid(4, 4), np.full((4, 4, 4), -9999.0))
    with pytest.raises(QgsProcessingException, match='INPUT: the input bands are nodata everywhere'):
        run_alg('surfacemask', {'INPUT': empty, 'OUTPUT': str(tmp_path / 'o.tif')})
    assert not (tmp_path / 'o.tif').exists()
    two = blockio.write_raster(tmp_path / 'two.tif', grid(4, 4), np.full((2, 4, 4), 0.1))
    with pytest.raises(QgsProcessingException, match=r'NIR_BAND: choose a band of the input \(1-2\)'):
        run_alg('surfacemask', {'INPUT': two, 'RED_BAND': 1, 'NIR_BAND': 5, 'MASK_WATER': False,
                                'OUTPUT': str(tmp_path / 'o.tif')})
    with pytest.raises(QgsProcessingException, match='EXCLUDE_POLYGONS: nothing to mask'):
        run_alg('surfacemask', {'INPUT': two, 'MASK_VEGETATION': False, 'MASK_WATER': False,
                                'OUTPUT': str(tmp_path / 'o.tif')})
