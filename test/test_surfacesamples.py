"""Surface-to-surface sample set: band values, kriged values and densified pixels at known truths.

The synthetic image has band k = k·10000 + 100·row + col, so a pixel's value, and the mean of
any window (a linear function: the mean of the valid pixels' rows and columns), are known by hand.
"""
import numpy as np
import pytest
from osgeo import gdal, ogr

from factories import (
    crs_wkt,
    make_grid,
    pixel_centre,
    pykrige_with_error,
    run_as_in_the_toolbox,
    write_points,
    write_test_raster,
)
from rsgeochem.core.errors import CancelledError, InputError
from rsgeochem.core.geostat.surface_samples import band_field_names, surface_samples
from rsgeochem.core.raster import blockio

HEIGHT, WIDTH = 15, 20
GRID = make_grid(WIDTH, HEIGHT)
ROWS, COLS = np.mgrid[0:HEIGHT, 0:WIDTH]


def band_truth(band, rows, cols):
    return band * 10000.0 + 100.0 * np.asarray(rows, float) + np.asarray(cols, float)


@pytest.fixture
def rasters(tmp_path):
    """Image (3 bands, nodata at (12, 3) in band 2), kriged = row + col/1000 (nodata at (12, 15)),
    variance = col (units²), mask 0 at (2, 2)."""
    image = np.ma.masked_array([band_truth(k, ROWS, COLS) for k in (1, 2, 3)], mask=False)
    image[1, 12, 3] = np.ma.masked
    kriged = np.ma.masked_array(ROWS + COLS / 1000.0, mask=False)
    kriged[12, 15] = np.ma.masked
    mask = np.ones((HEIGHT, WIDTH))
    mask[2, 2] = 0
    return {
        'image': write_test_raster(tmp_path / 'image.tif', image, GRID,
                                   descriptions=['B1 blue', '', 'kriged']),
        'kriged': write_test_raster(tmp_path / 'kriged.tif', kriged, GRID, descriptions=['pred']),
        'variance': write_test_raster(tmp_path / 'variance.tif', COLS.astype(float), GRID),
        'mask': write_test_raster(tmp_path / 'mask.tif', mask, GRID, nodata=255),
    }


def xy(*pixels, shift=(0.0, 0.0)):
    points = np.array([pixel_centre(GRID, r, c) for r, c in pixels]) + np.asarray(shift)
    return points[:, 0], points[:, 1]


def test_band_and_kriged_values_at_samples_with_edge_windows(rasters):
    # points shifted 10 m inside their pixels (30 m): still the same pixel
    x, y = xy((5, 5), (0, 0), (14, 19), (7, 3), shift=(10.0, -10.0))
    for window, expected_means, expected_pixels in (
            (1, [[5, 5], [0, 0], [14, 19], [7, 3]], [1, 1, 1, 1]),
            # 3x3 at the corners keeps the 2x2 inside the image: mean row/col 0.5 and 13.5/18.5
            (3, [[5, 5], [0.5, 0.5], [13.5, 18.5], [7, 3]], [9, 4, 4, 9]),
            (5, [[5, 5], [1, 1], [13, 18], [7, 3]], [25, 9, 9, 25])):
        result = surface_samples(rasters['image'], rasters['kriged'], x, y, rasters['variance'],
                                 window=window)
        means = np.array(expected_means)
        for k in range(3):
            np.testing.assert_allclose(result.bands[:, k], band_truth(k + 1, means[:, 0], means[:, 1]),
                                       rtol=0, atol=1e-3)  # float32 storage of values < 4e4
        np.testing.assert_array_equal(result.window_pixels, expected_pixels)
        np.testing.assert_array_equal(result.source, [0, 1, 2, 3])
        np.testing.assert_allclose(result.kriged, [5.005, 0.0, 14.019, 7.003], atol=1e-6)
        np.testing.assert_allclose(result.variance, [5, 0, 19, 3])
        np.testing.assert_allclose(result.x, x)  # samples keep their own location
        assert result.descriptions == ('B1 blue', '', 'kriged')
        assert not result.densified.any()


def test_window_mean_skips_nodata_and_masked_neighbours(rasters):
    # (11, 3): its 3x3 window holds band 2's nodata pixel (12, 3); (3, 3): MASK 0 at (2, 2)
    x, y = xy((11, 3), (3, 3))
    result = surface_samples(rasters['image'], rasters['kriged'], x, y, mask=rasters['mask'], window=3)
    window = [(r, c) for r in range(10, 13) for c in range(2, 5)]
    without_nodata = [p for p in window if p != (12, 3)]
    np.testing.assert_allclose(result.bands[0, 0], np.mean([band_truth(1, *p) for p in window]), atol=1e-3)
    np.testing.assert_allclose(result.bands[0, 1], np.mean([band_truth(2, *p) for p in without_nodata]),
                               atol=1e-3)
    masked_window = [(r, c) for r in range(2, 5) for c in range(2, 5) if (r, c) != (2, 2)]
    np.testing.assert_allclose(result.bands[1, 2], np.mean([band_truth(3, *p) for p in masked_window]),
                               atol=1e-3)
    np.testing.assert_array_equal(result.window_pixels, [8, 8])


def test_samples_outside_masked_or_on_nodata_are_counted(rasters):
    x, y = xy((5, 5), (2, 2), (12, 3), (12, 15), (-1, 4), (3, 25))
    result = surface_samples(rasters['image'], rasters['kriged'], x, y, rasters['variance'],
                             rasters['mask'])
    np.testing.assert_array_equal(result.source, [0])
    assert result.skipped == {'outside INPUT': 2, 'outside KRIGED or VARIANCE': 0,
                              'on a pixel masked by MASK': 1, 'on nodata in INPUT': 1,
                              'on nodata in KRIGED or VARIANCE': 1}


def test_densification_adds_each_pixel_within_radius_once(rasters):
    # radius 1.5 px (45 m) around a pixel centre: its 3x3 block (corner distance 1.41 px);
    # samples at (5, 5) and (5, 7) share column 6: 9 + 9 - 3 pixels minus the 2 sample pixels
    x, y = xy((5, 5), (5, 7))
    result = surface_samples(rasters['image'], rasters['kriged'], x, y, rasters['variance'],
                             radius=45.0, max_variance=100.0)
    assert result.densified.sum() == 13
    dense = result.densified
    cols, rows = (np.floor(v).astype(int) for v in GRID.to_pixel(result.x[dense], result.y[dense]))
    assert set(zip(rows, cols)) == {(r, c) for r in range(4, 7) for c in range(4, 9)} - {(5, 5), (5, 7)}
    np.testing.assert_allclose(result.bands[dense, 0], band_truth(1, rows, cols), atol=1e-3)
    np.testing.assert_allclose(result.kriged[dense], rows + cols / 1000, atol=1e-6)
    # radius 2 px: 13 pixels in the disc; variance = col < 5 drops columns 5..7 -> 4 pixels left
    # (the disc around (5, 5) has columns 3..7; pixels (4,4), (5,3), (5,4), (6,4))
    result = surface_samples(rasters['image'], rasters['kriged'], *xy((5, 5)), rasters['variance'],
                             radius=60.0, max_variance=5.0)
    assert result.densified.sum() == 4
    np.testing.assert_array_less(result.variance[result.densified], 5.0)


def test_block_reads_stay_around_samples_and_match_one_block(tmp_path, monkeypatch):
    rng = np.random.default_rng(4)
    height, width = 60, 2000
    grid = make_grid(width, height)
    image = write_test_raster(tmp_path / 'wide.tif', rng.uniform(0, 1, (3, height, width)), grid)
    kriged = write_test_raster(tmp_path / 'k.tif', rng.uniform(0, 1, (height, width)), grid)
    samples = [(r, c) for r in (3, 4, 5, 40) for c in (0, 7, 1999)]
    x, y = (np.array([pixel_centre(grid, r, c) for r, c in samples]) + [3.0, -3.0]).T
    rows_read = []
    original = blockio.RasterReader.read

    def spy(self, window, bands=None, dtype=np.float64):
        rows_read.append(window.read_rows)
        return original(self, window, bands, dtype)
    monkeypatch.setattr(blockio.RasterReader, 'read', spy)
    small = surface_samples(image, kriged, x, y, window=5, memory_mb=1)
    small_reads = sum(rows_read) // 2  # image and kriged read the same windows
    assert small_reads < height / 2  # blocks without samples are never read
    assert max(rows_read) < 20      # 1 MB: blocks of a few rows
    whole = surface_samples(image, kriged, x, y, window=5, memory_mb=256)
    np.testing.assert_allclose(small.bands, whole.bands)
    np.testing.assert_allclose(small.kriged, whole.kriged)


def test_only_the_part_around_the_samples_is_read(tmp_path, monkeypatch):
    """Samples in one corner of a large raster: the reads cover the samples' neighbourhood, not the
    raster, and the values are the analytic ones (linear bands: a 3x3 mean equals the centre)."""
    height, width = 500, 700
    grid = make_grid(width, height)
    rows, cols = np.mgrid[0:height, 0:width]
    image = write_test_raster(tmp_path / 'big.tif', np.array([band_truth(k, rows, cols) for k in (1, 2)]),
                              grid)
    kriged = write_test_raster(tmp_path / 'k.tif', rows + cols / 1000.0, grid)
    variance = write_test_raster(tmp_path / 'v.tif', np.zeros((height, width)), grid)
    samples = [(r, c) for r in (20, 25, 33) for c in (10, 18)]
    x, y = (np.array([pixel_centre(grid, r, c) for r, c in samples]) + [3.0, -3.0]).T
    pixels_read = []
    original = blockio.RasterReader.read

    def spy(self, window, bands=None, dtype=np.float64):
        pixels_read.append(window.read_rows * window.columns(self.info.grid.width)[1])
        return original(self, window, bands, dtype)
    monkeypatch.setattr(blockio.RasterReader, 'read', spy)
    result = surface_samples(image, kriged, x, y, variance, window=3, radius=45.0, max_variance=1.0)
    assert sum(pixels_read) < 0.01 * 4 * height * width
    sample_rows, sample_cols = np.array(samples).T
    sample = ~result.densified
    np.testing.assert_allclose(result.bands[sample, 1], band_truth(2, sample_rows, sample_cols), atol=1e-2)
    np.testing.assert_allclose(result.kriged[sample], sample_rows + sample_cols / 1000.0, atol=1e-5)
    dense_cols, dense_rows = (np.floor(v).astype(int) for v in grid.to_pixel(result.x[result.densified],
                                                                           result.y[result.densified]))
    centre_x, centre_y = grid.pixel_centres(0, 60)
    near = np.hypot(centre_x[None, None, :60] - x[:, None, None], centre_y[None, :, None] - y[:, None, None])
    expected = {(r, c) for _, r, c in zip(*np.nonzero(near <= 45.0))} - set(samples)
    assert set(zip(dense_rows, dense_cols)) == expected and result.densified.sum() == len(expected)
    np.testing.assert_allclose(result.kriged[result.densified], dense_rows + dense_cols / 1000.0, atol=1e-5)


def test_progress_reaches_one_and_cancel_stops(rasters):
    x, y = xy((1, 1), (13, 18))
    fractions = []
    surface_samples(rasters['image'], rasters['kriged'], x, y, progress=fractions.append)
    assert fractions[-1] == 1.0 and fractions == sorted(fractions)
    with pytest.raises(CancelledError):
        surface_samples(rasters['image'], rasters['kriged'], x, y, cancel=lambda: True)


def test_band_field_names_are_safe_and_unique():
    names = band_field_names(['B1 blue', 'B1-blue', '', '2', 'kriged', 'b1_BLUE', 'é/µ'],
                             reserved=['fid', 'kriged'])
    assert names == ['B1_blue', 'B1_blue_2', 'band_3', 'b_2', 'kriged_2', 'b1_BLUE_3', 'band_7']


def test_kriged_variance_and_mask_on_a_window_of_the_image_lattice(rasters, tmp_path):
    """KRIGED/VARIANCE kriged over the samples' extent only (a window of the image's lattice, here
    rows 3..10, columns 4..15 cut from the full grids) give each sample the value of its pixel
    (kriged = row + col/1000, variance = col); a sample outside the window is left out and counted;
    a MASK window counts as masked where it has no pixel (band means over 3x3 skip those pixels)."""
    rows, cols = slice(3, 11), slice(4, 16)
    x0, dx, _, y0, _, dy = GRID.geotransform
    window_grid = blockio.Grid(12, 8, (x0 + 4 * dx, dx, 0.0, y0 + 3 * dy, 0.0, dy), GRID.crs_wkt)
    kriged = write_test_raster(tmp_path / 'kriged_window.tif', (ROWS + COLS / 1000.0)[rows, cols],
                               window_grid)
    variance = write_test_raster(tmp_path / 'variance_window.tif', COLS[rows, cols].astype(float),
                                 window_grid)
    mask = write_test_raster(tmp_path / 'mask_window.tif', np.ones((8, 12)), window_grid, nodata=255)
    pixels = [(5, 5), (3, 4), (10, 15), (7, 9), (2, 5), (11, 15), (6, 3), (6, 16)]  # last 4 outside
    x, y = xy(*pixels, shift=(5.0, -5.0))
    result = surface_samples(rasters['image'], kriged, x, y, variance, mask, window=3)
    np.testing.assert_array_equal(result.source, [0, 1, 2, 3])
    inside = np.array(pixels[:4])
    np.testing.assert_allclose(result.kriged, inside[:, 0] + inside[:, 1] / 1000.0, atol=1e-6)
    np.testing.assert_allclose(result.variance, inside[:, 1])
    assert result.skipped['outside KRIGED or VARIANCE'] == 4 and result.skipped_text() == \
        '4 outside KRIGED or VARIANCE'
    # 3x3 means: (5, 5) and (7, 9) whole windows; (3, 4) keeps rows 3-4 x cols 4-5, (10, 15) rows 9-10
    # x cols 14-15 (the rest is outside the MASK window)
    means = np.array([[5, 5], [3.5, 4.5], [9.5, 14.5], [7, 9]])
    np.testing.assert_allclose(result.bands[:, 0], band_truth(1, means[:, 0], means[:, 1]), atol=1e-3)
    np.testing.assert_array_equal(result.window_pixels, [9, 4, 4, 9])
    # the same samples on the full grids: the same kriged values and variances
    full = surface_samples(rasters['image'], rasters['kriged'], x[:4], y[:4], rasters['variance'])
    np.testing.assert_array_equal(result.kriged, full.kriged)
    np.testing.assert_array_equal(result.variance, full.variance)


def test_kriged_raster_larger_than_the_image_on_its_lattice(rasters, tmp_path):
    # kriged over the samples' extent plus a margin beyond the image: 2 pixels more on every side
    x0, dx, _, y0, _, dy = GRID.geotransform
    larger = blockio.Grid(WIDTH + 4, HEIGHT + 4, (x0 - 2 * dx, dx, 0.0, y0 - 2 * dy, 0.0, dy), GRID.crs_wkt)
    rows, cols = np.mgrid[-2:HEIGHT + 2, -2:WIDTH + 2]
    kriged = write_test_raster(tmp_path / 'kriged_larger.tif', rows + cols / 1000.0, larger)
    x, y = xy((0, 0), (14, 19), (7, 3))
    result = surface_samples(rasters['image'], kriged, x, y)
    np.testing.assert_allclose(result.kriged, [0.0, 14.019, 7.003], atol=1e-6)


@pytest.mark.parametrize('bad, key', [('grid', 'KRIGED'), ('pixel', 'MASK'), ('crs', 'VARIANCE'),
                                      ('outside', 'SAMPLES'),
                                      ('nodata', 'SAMPLES'), ('novariance', 'VARIANCE'),
                                      ('nomax', 'MAX_VARIANCE'), ('window', 'WINDOW')])
def test_core_bad_inputs_name_the_parameter(rasters, tmp_path, bad, key):
    x, y = xy((5, 5))
    arguments = dict(image=rasters['image'], kriged=rasters['kriged'], x=x, y=y)
    if bad == 'grid':  # shifted by half a pixel: not on the image's lattice
        arguments['kriged'] = write_test_raster(tmp_path / 'k.tif', np.ones((HEIGHT, WIDTH)),
                                                make_grid(WIDTH, HEIGHT, origin=(500015.0, 5600000.0)))
    elif bad == 'pixel':  # pixels of another size over the same extent
        arguments['mask'] = write_test_raster(tmp_path / 'm.tif', np.ones((2 * HEIGHT, 2 * WIDTH)),
                                              make_grid(2 * WIDTH, 2 * HEIGHT, pixel=15.0))
    elif bad == 'crs':
        arguments['variance'] = write_test_raster(tmp_path / 'v.tif', np.ones((HEIGHT, WIDTH)),
                                                  make_grid(WIDTH, HEIGHT, epsg=32633))
    elif bad == 'outside':
        arguments['x'], arguments['y'] = xy((-5, 5), (5, 40))
    elif bad == 'nodata':
        arguments['x'], arguments['y'] = xy((12, 15), (12, 3))
    elif bad == 'novariance':
        arguments['radius'], arguments['max_variance'] = 30.0, 1.0
    elif bad == 'nomax':
        arguments.update(variance=rasters['variance'], radius=30.0, max_variance=0.0)
    else:
        arguments['window'] = 4
    with pytest.raises(InputError) as caught:
        surface_samples(**arguments)
    assert caught.value.parameter == key


# --- the Processing algorithm ----------------------------------------------------------------

def wgs84_points(pixels):
    """Pixel centres as EPSG:4326 lon/lat (the samples come in another CRS than the image)."""
    source, target = gdal.osr.SpatialReference(), gdal.osr.SpatialReference()
    source.ImportFromWkt(crs_wkt())
    target.ImportFromEPSG(4326)
    target.SetAxisMappingStrategy(gdal.osr.OAMS_TRADITIONAL_GIS_ORDER)
    transform = gdal.osr.CoordinateTransformation(source, target)
    return [transform.TransformPoint(*pixel_centre(GRID, r, c))[:2] for r, c in pixels]


def read_gpkg(path):
    """(field names, attribute dicts, EPSG code) of the first layer."""
    dataset = ogr.Open(str(path))  # keep the dataset alive while its layer is used
    layer = dataset.GetLayer(0)
    definition = layer.GetLayerDefn()
    names = [definition.GetFieldDefn(i).GetName() for i in range(definition.GetFieldCount())]
    return names, [feature.items() for feature in layer], layer.GetSpatialRef().GetAuthorityCode(None)


def test_algorithm_writes_sample_set_from_points_in_another_crs(qgis_app, rasters, tmp_path):
    pixels = [(5, 5), (8, 10), (12, 3), (6, 6)]
    points = write_points(tmp_path / 'samples.gpkg', wgs84_points(pixels),
                          {'re2o3': [0.5, 0.7, 0.9, None], 'name': ['a', 'b', 'c', 'd']}, epsg=4326)
    output = tmp_path / 'out.gpkg'
    _, loaded = run_as_in_the_toolbox(
        'surfacesamples', {'INPUT': rasters['image'], 'SAMPLES': points, 'FIELD': 're2o3',
                           'KRIGED': rasters['kriged'], 'VARIANCE': rasters['variance'],
                           'MASK': rasters['mask'], 'WINDOW': 0, 'RADIUS': 45.0, 'MAX_VARIANCE': 6.0,
                           'OUTPUT': str(output)}, ['OUTPUT'])
    assert loaded['OUTPUT'].name == 'Surface-to-surface samples (re2o3)'
    names, rows, epsg = read_gpkg(output)  # complete as soon as processing.run returns
    assert names == ['sample_fid', 'measured', 'kriged', 'kriging_var', 'densified', 'window_px', 'target',
                     'B1_blue', 'band_2', 'kriged_2']
    samples = [row for row in rows if row['densified'] == 0]
    # (12, 3) is nodata in band 2, the 4th point has a NULL value
    assert [row['measured'] for row in samples] == [0.5, 0.7]
    for row, (r, c) in zip(samples, pixels):
        assert row['B1_blue'] == pytest.approx(band_truth(1, r, c), abs=1e-3)
        assert row['kriged_2'] == pytest.approx(band_truth(3, r, c), abs=1e-3)
        assert row['kriged'] == pytest.approx(r + c / 1000, abs=1e-6)
    # densified (variance = col < 6): around (5, 5) columns 4 and 5 minus the sample pixel (5);
    # around (12, 3), a sample left out for nodata but still sampled ground, its 3x3 block minus
    # itself (8); none around (8, 10) (columns 9..11)
    dense = [row for row in rows if row['densified'] == 1]
    assert len(dense) == 13 and all(row['measured'] is None and row['sample_fid'] is None for row in dense)
    assert epsg == '32632'
    # the default target is the sample's own (measured) value; densified pixels take the kriged one
    assert [row['target'] for row in samples] == [0.5, 0.7]
    assert all(row['target'] == row['kriged'] for row in dense)


def test_target_at_the_pixel_centre_is_the_kriged_value(run_alg, rasters, tmp_path):
    pixels = [(5, 5), (8, 10)]
    points = write_points(tmp_path / 's.gpkg', [pixel_centre(GRID, r, c) for r, c in pixels],
                          {'value': [0.5, 0.7]})
    output = tmp_path / 'centre.gpkg'
    run_alg('surfacesamples', {'INPUT': rasters['image'], 'SAMPLES': points, 'FIELD': 'value',
                               'KRIGED': rasters['kriged'], 'TARGET_VALUE': 1, 'OUTPUT': str(output)})
    _, rows, _ = read_gpkg(output)
    # the kriged test raster holds row + col / 1000 at every pixel
    assert [row['target'] for row in rows] == pytest.approx([r + c / 1000 for r, c in pixels], abs=1e-6)


@pytest.fixture
def point_file(qgis_app, tmp_path):
    return write_points(tmp_path / 'p.gpkg', [pixel_centre(GRID, 5, 5)],
                        {'value': [1.0], 'label': ['x']})


@pytest.mark.parametrize('change, key', [
    ({'FIELD': 'label'}, 'FIELD'),
    ({'KRIGED': 'other_grid'}, 'KRIGED'),
    ({'SAMPLES': 'far'}, 'SAMPLES'),
    ({'SAMPLES': 'null'}, 'SAMPLES'),
    ({'RADIUS': 30.0}, 'MAX_VARIANCE'),
])
def test_algorithm_bad_inputs_name_the_parameter(run_alg, rasters, point_file, tmp_path, change, key):
    from qgis.core import QgsProcessingException
    parameters = {'INPUT': rasters['image'], 'SAMPLES': point_file, 'FIELD': 'value',
                  'KRIGED': rasters['kriged'], 'VARIANCE': rasters['variance'], 'OUTPUT': 'memory:'}
    parameters.update(change)
    if parameters['KRIGED'] == 'other_grid':
        parameters['KRIGED'] = write_test_raster(tmp_path / 'k2.tif', np.ones((HEIGHT, WIDTH)),
                                                 make_grid(WIDTH, HEIGHT, pixel=10.0))
    if parameters['SAMPLES'] in ('far', 'null'):
        far = parameters['SAMPLES'] == 'far'
        place = (0.0, 0.0) if far else pixel_centre(GRID, 1, 1)
        parameters['SAMPLES'] = write_points(tmp_path / 'q.gpkg', [place], {'value': [1.0 if far else None]})
    with pytest.raises(QgsProcessingException, match=f'^{key}: '):
        run_alg('surfacesamples', parameters)


def test_qgis_process_runs_surfacesamples(qgis_process, qgis_app, rasters, tmp_path):
    points = write_points(tmp_path / 'samples.gpkg', [pixel_centre(GRID, 3, 4), pixel_centre(GRID, 9, 1)],
                          {'re2o3': [0.2, 0.4]})
    output = tmp_path / 'set.gpkg'
    qgis_process('run', 'rsgeochem:surfacesamples', '--', f'INPUT={rasters["image"]}', f'SAMPLES={points}',
                 'FIELD=re2o3', f'KRIGED={rasters["kriged"]}', 'WINDOW=1', f'OUTPUT={output}')
    names, rows, epsg = read_gpkg(output)
    assert epsg == '32632' and [row['measured'] for row in rows] == [0.2, 0.4]
    for row, (r, c) in zip(rows, [(3, 4), (9, 1)]):
        assert row['band_2'] == pytest.approx(band_truth(2, r, c), abs=1e-3)  # 3x3 mean, interior
        assert row['kriging_var'] is None and row['window_px'] == 9


@pytest.mark.parametrize('error_variance', [0.0, 0.04])
def test_measurement_error_kriging_smooths_the_targets(run_alg, rasters, tmp_path, error_variance):
    """kriging -> surfacesamples on samples at pixel centres: exact Kriging gives targets equal to the
    measured values; with a measurement-error variance they are the error-free prediction (pykrige,
    non-exact, computed here at the samples)."""
    from rsgeochem.core.geostat.variogram import VariogramModel
    rng = np.random.default_rng(8)
    pixels = [(r, c) for r in range(1, HEIGHT, 3) for c in range(1, WIDTH, 3)]
    points = np.array([pixel_centre(GRID, r, c) for r, c in pixels])
    values = 2.0 + 0.002 * (points[:, 0] - points[:, 0].min()) + rng.normal(0.0, 0.3, len(pixels))
    layer = write_points(tmp_path / 'samples.gpkg', points, {'re2o3': values})
    run_alg('kriging', {'INPUT': layer, 'FIELD': 're2o3', 'REFERENCE_RASTER': rasters['image'],
                        'GRID_EXTENT': 1, 'N_NEIGHBOURS': 0, 'VARIOGRAM_MODEL': 'spherical', 'NUGGET': 0.05,
                        'SILL': 0.1, 'RANGE': 200.0, 'MEASUREMENT_ERROR': error_variance,
                        'OUTPUT': str(tmp_path / 'kriged.tif')})
    run_alg('surfacesamples', {'INPUT': rasters['image'], 'SAMPLES': layer, 'FIELD': 're2o3',
                               'KRIGED': str(tmp_path / 'kriged.tif'), 'OUTPUT': str(tmp_path / 'set.gpkg')})
    _, rows, _ = read_gpkg(tmp_path / 'set.gpkg')
    kriged = np.array([row['kriged'] for row in rows])
    measured = np.array([row['measured'] for row in rows])
    if not error_variance:
        np.testing.assert_allclose(kriged, measured, atol=1e-5)
        return
    model = VariogramModel('spherical', 0.05, 0.1, 200.0, error_variance=error_variance)
    expected, _ = pykrige_with_error(points[:, 0], points[:, 1], values, model).execute(
        'points', points[:, 0], points[:, 1])
    np.testing.assert_allclose(kriged, expected, atol=1e-5)
    assert np.sqrt(np.mean((kriged - measured) ** 2)) > 0.05
