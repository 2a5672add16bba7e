"""Kriging: Meuse log(zinc) against gstat 2.1.0 (grid and leave-one-out), analytic cases, pykrige
as a second reference for neighbourhoods and external drift, shared-block against per-pixel
neighbourhoods, bad inputs, and one qgis_process run."""
import csv
import dataclasses

import numpy as np
import pytest
from osgeo import gdal

from factories import pykrige_with_error, run_as_in_the_toolbox
from rsgeochem.core.errors import InputError
from rsgeochem.core.geostat import kriging, kriging_grid
from rsgeochem.core.geostat.variogram import VariogramModel
from rsgeochem.core.raster.blockio import Grid, raster_info

GSTAT_MODEL = VariogramModel('spherical', 0.0506624268192143, 0.590607802210119, 897.020909797001)
GIVEN = {'VARIOGRAM_MODEL': 'spherical', 'NUGGET': GSTAT_MODEL.nugget, 'SILL': GSTAT_MODEL.psill,
         'RANGE': GSTAT_MODEL.range}
# float32 GeoTIFF outputs of values ~7 carry 2.4e-7 rounding: grid comparisons use 1e-6
GRID_ATOL = 1e-6


def read_csv(path):
    with open(path, newline='') as handle:
        rows = list(csv.DictReader(handle))
    return {key: np.array([row[key] for row in rows]) for key in rows[0]}


@pytest.fixture(scope='module')
def meuse(test_data):
    table = read_csv(test_data / 'meuse' / 'meuse.csv')
    return kriging.prepare_samples(table['x'], table['y'], table['zinc'], log_transform=True)


@pytest.fixture(scope='module')
def gstat_grid(test_data):
    table = read_csv(test_data / 'meuse' / 'gstat' / 'ok_logzinc_grid.csv')
    return {key: values.astype(float) for key, values in table.items()}


@pytest.fixture(scope='module')
def gstat_cv(test_data):
    table = read_csv(test_data / 'meuse' / 'gstat' / 'ok_logzinc_loocv.csv')
    return {key: values.astype(float) for key, values in table.items()}


@pytest.fixture(scope='module')
def meuse_grid(test_data):
    return raster_info(test_data / 'meuse' / 'meuse_grid_covariates.tif').grid


def at_cells(path, grid, x, y, band=1):
    """Raster values at the pixels holding map points."""
    dataset = gdal.Open(str(path))  # kept alive while its band is read
    array = dataset.GetRasterBand(band).ReadAsArray().astype(np.float64)
    col, row = grid.to_pixel(x, y)
    return array[np.floor(row).astype(int), np.floor(col).astype(int)]


# --- Meuse against gstat -------------------------------------------------------------------------

def test_points_match_gstat_grid(meuse, gstat_grid):
    prediction, variance = kriging.krige_points(meuse, GSTAT_MODEL, gstat_grid['x'], gstat_grid['y'])
    np.testing.assert_allclose(prediction, gstat_grid['pred'], rtol=0, atol=1e-9)
    np.testing.assert_allclose(variance, gstat_grid['var'], rtol=0, atol=1e-9)


def test_leave_one_out_matches_gstat(meuse, gstat_cv):
    cv = kriging.leave_one_out(meuse, GSTAT_MODEL)
    # samples are in the file's order (no duplicates in Meuse): compare by location
    order = np.lexsort((meuse.y, meuse.x))
    reference = np.lexsort((gstat_cv['y'], gstat_cv['x']))
    np.testing.assert_allclose(cv.predicted[order], gstat_cv['var1.pred'][reference], atol=1e-9)
    np.testing.assert_allclose(cv.variance[order], gstat_cv['var1.var'][reference], atol=1e-9)
    np.testing.assert_allclose(cv.zscore[order], gstat_cv['zscore'][reference], atol=1e-8)
    statistics = cv.statistics()
    assert statistics['RMSE'] == pytest.approx(np.sqrt(np.mean(gstat_cv['residual'] ** 2)), rel=1e-9)
    assert statistics['MSDR'] == pytest.approx(np.mean(gstat_cv['zscore'] ** 2), rel=1e-8)


def test_neighbourhood_leave_one_out_with_all_samples_is_global(meuse, gstat_cv):
    cv = kriging.leave_one_out(meuse, GSTAT_MODEL, n_neighbours=len(meuse) - 1, radius=1e6)
    np.testing.assert_allclose(np.sort(cv.predicted), np.sort(gstat_cv['var1.pred']), atol=1e-9)


def test_grid_matches_gstat(meuse, meuse_grid, gstat_grid, tmp_path):
    summary = kriging_grid.krige_grid(meuse, GSTAT_MODEL, meuse_grid, tmp_path / 'p.tif', tmp_path / 'v.tif')
    assert summary.mode == 'global'
    x, y = gstat_grid['x'], gstat_grid['y']
    np.testing.assert_allclose(at_cells(tmp_path / 'p.tif', meuse_grid, x, y), gstat_grid['pred'],
                               atol=GRID_ATOL)
    np.testing.assert_allclose(at_cells(tmp_path / 'v.tif', meuse_grid, x, y), gstat_grid['var'],
                               atol=GRID_ATOL)
    info = raster_info(tmp_path / 'p.tif')
    assert info.grid.same_as(meuse_grid) and info.descriptions == ('prediction',)


def test_auto_fit_lands_near_gstat(meuse, gstat_grid):
    fit = kriging.fit_for_samples(meuse, 'auto')
    assert fit.model.name == 'spherical'
    np.testing.assert_allclose([fit.model.nugget, fit.model.psill, fit.model.range],
                               [GSTAT_MODEL.nugget, GSTAT_MODEL.psill, GSTAT_MODEL.range], rtol=1e-4)
    prediction, variance = kriging.krige_points(meuse, fit.model, gstat_grid['x'], gstat_grid['y'])
    # measured: max 2.5e-5 (prediction, log units) and 3.3e-6 (variance); pykrige 1.7.3's default fit
    # (6 lags, unweighted) gives predictions up to 0.61 log units off gstat's
    np.testing.assert_allclose(prediction, gstat_grid['pred'], atol=5e-5)
    np.testing.assert_allclose(variance, gstat_grid['var'], atol=5e-5)


# --- analytic cases ------------------------------------------------------------------------------

def synthetic(n=60, seed=3):
    rng = np.random.default_rng(seed)
    x, y = rng.uniform(0, 1000, n), rng.uniform(0, 1000, n)
    return x, y, np.sin(x / 150) + np.cos(y / 200) + rng.normal(0, 0.1, n)


@pytest.mark.parametrize('model', [VariogramModel('spherical', 0.0, 1.0, 400.0),
                                   VariogramModel('exponential', 0.2, 1.0, 400.0),
                                   VariogramModel('linear', 0.0, 1.0, 1000.0),
                                   VariogramModel('power', 0.1, 1.0, 1000.0, 1.5)])
@pytest.mark.parametrize('neighbours', [0, 12])
def test_kriging_reproduces_data_at_samples(model, neighbours):
    x, y, z = synthetic()
    samples = kriging.prepare_samples(x, y, z)
    prediction, variance = kriging.krige_points(samples, model, samples.x, samples.y, n_neighbours=neighbours)
    np.testing.assert_allclose(prediction, samples.z, atol=1e-9)
    np.testing.assert_allclose(variance, 0.0, atol=1e-9)


@pytest.mark.parametrize('nugget', [0.0, 0.2])
def test_grid_reproduces_data_at_samples_on_pixel_centres(tmp_path, nugget):
    """gstat's convention γ(0) = 0: Kriging is exact at a sample even with a nugget."""
    grid = Grid(50, 40, (0.0, 10.0, 0.0, 400.0, 0.0, -10.0), '')
    rng = np.random.default_rng(5)
    col, row = rng.choice(50, 30), rng.choice(40, 30)
    x, y = 5.0 + 10.0 * col, 395.0 - 10.0 * row
    samples = kriging.prepare_samples(x, y, rng.normal(size=30))
    model = VariogramModel('spherical', nugget, 1.0, 200.0)
    for block in (1, 4):
        kriging_grid.krige_grid(samples, model, grid, tmp_path / 'p.tif', tmp_path / 'v.tif', n_neighbours=8,
                                block_pixels=block)
        at = (np.floor(grid.to_pixel(samples.x, samples.y)[1]).astype(int),
              np.floor(grid.to_pixel(samples.x, samples.y)[0]).astype(int))
        prediction = gdal.Open(str(tmp_path / 'p.tif')).ReadAsArray()[at]
        variance = gdal.Open(str(tmp_path / 'v.tif')).ReadAsArray()[at]
        np.testing.assert_allclose(prediction, samples.z, atol=1e-5)
        np.testing.assert_allclose(variance, 0.0, atol=1e-5)


def test_external_drift_reproduces_a_drift_that_explains_the_data():
    x, y, _ = synthetic()
    drift = np.column_stack([x / 100.0, np.sqrt(y)])
    z = 2.0 + 3.0 * drift[:, 0] - 0.5 * drift[:, 1]
    samples = kriging.prepare_samples(x, y, z, drift)
    tx, ty = np.array([10.0, 500.0, 990.0]), np.array([900.0, 500.0, 20.0])
    target_drift = np.column_stack([tx / 100.0, np.sqrt(ty)])
    for neighbours in (0, 10):
        prediction, _ = kriging.krige_points(samples, VariogramModel('exponential', 0.1, 1.0, 300.0), tx, ty,
                                             target_drift, n_neighbours=neighbours)
        np.testing.assert_allclose(prediction, 2.0 + 3.0 * target_drift[:, 0] - 0.5 * target_drift[:, 1],
                                   atol=1e-9)


def test_external_drift_matches_pykrige_universal_kriging():
    from pykrige.uk import UniversalKriging
    x, y, z = synthetic(80, 7)
    drift = np.sqrt(x + y)
    model = VariogramModel('exponential', 0.05, 1.0, 500.0)
    tx, ty = np.linspace(20, 980, 40), np.linspace(970, 30, 40)
    theirs = UniversalKriging(x, y, z, variogram_model='exponential', drift_terms=['specified'],
                              specified_drift=[drift],
                              variogram_parameters={'psill': 1.0, 'range': 500.0, 'nugget': 0.05})
    their_prediction, their_variance = theirs.execute('points', tx, ty,
                                                      specified_drift_arrays=[np.sqrt(tx + ty)])
    samples = kriging.prepare_samples(x, y, z, drift)
    prediction, variance = kriging.krige_points(samples, model, tx, ty, np.sqrt(tx + ty))
    np.testing.assert_allclose(prediction, their_prediction, atol=1e-9)
    np.testing.assert_allclose(variance, their_variance, atol=1e-9)


def test_per_pixel_neighbourhood_matches_pykrige_moving_window(tmp_path):
    from pykrige.ok import OrdinaryKriging
    x, y, z = synthetic(150, 11)
    model = VariogramModel('spherical', 0.05, 1.0, 350.0)
    grid = Grid(30, 25, (0.0, 33.0, 0.0, 1000.0, 0.0, -40.0), '')
    kriging_grid.krige_grid(kriging.prepare_samples(x, y, z), model, grid, tmp_path / 'p.tif',
                            tmp_path / 'v.tif', n_neighbours=16, block_pixels=1)
    xs, ys = grid.pixel_centres(0, grid.height)
    theirs = OrdinaryKriging(x, y, z, variogram_model='spherical',
                             variogram_parameters={'psill': 1.0, 'range': 350.0, 'nugget': 0.05})
    their_prediction, their_variance = theirs.execute('grid', xs, ys, backend='C', n_closest_points=16)
    # float32 products and outputs
    np.testing.assert_allclose(gdal.Open(str(tmp_path / 'p.tif')).ReadAsArray(), their_prediction, atol=2e-5)
    np.testing.assert_allclose(gdal.Open(str(tmp_path / 'v.tif')).ReadAsArray(), their_variance, atol=2e-5)


def test_search_radius(meuse, gstat_grid, meuse_grid, tmp_path):
    x, y = gstat_grid['x'], gstat_grid['y']
    everything, _ = kriging.krige_points(meuse, GSTAT_MODEL, x, y, radius=1e5)
    np.testing.assert_allclose(everything, gstat_grid['pred'], atol=1e-9)
    # 5 km west of the first sample no sample is within 300 m; at the first sample several are
    tx, ty = np.array([meuse.x[0] - 5000.0, meuse.x[0]]), np.array([meuse.y[0], meuse.y[0]])
    prediction, variance = kriging.krige_points(meuse, GSTAT_MODEL, tx, ty, radius=300.0)
    assert np.isnan(prediction[0]) and np.isnan(variance[0]) and np.isfinite(prediction[1])
    summary = kriging_grid.krige_grid(meuse, GSTAT_MODEL, meuse_grid, tmp_path / 'p.tif', None, radius=300.0,
                                      block_pixels=1)
    assert 0 < summary.nodata_pixels < summary.pixels


# --- exact per-pixel neighbourhoods on grids (the default) -----------------------------------------

@pytest.mark.parametrize('n, k, spread', [(150, 16, 1000.0), (40, 39, 1000.0), (374, 32, 1000.0),
                                          (60, 5, 100.0), (12, 1, 1000.0)])
def test_tile_neighbour_sets_equal_a_k_d_tree_query_per_pixel(n, k, spread):
    """Every pixel's k nearest samples found tile by tile equal a per-pixel k-d tree query, with the
    grid reaching well beyond the samples (spread 100: samples clustered in a tenth of the grid)."""
    from scipy.spatial import cKDTree

    from rsgeochem.core.geostat.neighbour_tiles import TileNeighbourSets
    rng = np.random.default_rng(n + k)
    points = rng.uniform(0, spread, (n, 2))
    xs, ys = np.linspace(-50.0, 1050.0, 203), np.linspace(1030.0, -20.0, 77)
    tree = cKDTree(points)
    labels, sets, order = TileNeighbourSets(tree, k).label_sorted(xs, ys)
    np.testing.assert_array_equal(order, np.argsort(labels.ravel(), kind='stable'))
    _, expected = tree.query(np.column_stack([np.tile(xs, len(ys)), np.repeat(ys, len(xs))]), k=k)
    np.testing.assert_array_equal(sets[labels.ravel()], np.sort(expected.reshape(-1, k), axis=1))


def test_tile_neighbour_sets_break_ties_like_the_k_d_tree():
    """Samples on a survey lattice: many pixel centres are equally far from the k-th and (k+1)-th
    nearest sample; every pixel still gets the set a per-pixel k-d tree query gives."""
    from scipy.spatial import cKDTree

    from rsgeochem.core.geostat.neighbour_tiles import TileNeighbourSets
    gx, gy = np.meshgrid(np.arange(0.0, 200.0, 20.0), np.arange(0.0, 160.0, 20.0))
    tree = cKDTree(np.column_stack([gx.ravel(), gy.ravel()]))
    xs, ys = np.arange(-15.0, 215.0, 5.0), np.arange(175.0, -15.0, -5.0)
    points = np.column_stack([np.tile(xs, len(ys)), np.repeat(ys, len(xs))])
    distances, _ = tree.query(points, k=13)
    assert np.sum(np.isclose(distances[:, 11], distances[:, 12])) > 100  # ties at the 12th place
    _, expected = tree.query(points, k=list(range(1, 13)))  # as kriging.NeighbourSearch asks
    labels, sets, order = TileNeighbourSets(tree, 12).label_sorted(xs, ys)
    np.testing.assert_array_equal(order, np.argsort(labels.ravel(), kind='stable'))
    np.testing.assert_array_equal(sets[labels.ravel()], np.sort(expected, axis=1))


@pytest.mark.parametrize('case', ['ordinary', 'external drift', 'radius', 'samples on pixel centres'])
def test_exact_grid_kriging_equals_kriging_each_pixel_on_its_own(case):
    """The grid walker (neighbour sets by tiles, one factorisation per set shared by its pixels)
    against krige_points (a k-d tree query and a system per target), in float64, to 1e-9; with samples
    on pixel centres and a measurement error, γ₀ there is the error variance, not the nugget."""
    from rsgeochem.core.geostat.kriging_system import KrigingFrame
    x, y, z = synthetic(150, 21)
    grid = Grid(61, 47, (-20.0, 17.0, 0.0, 1010.0, 0.0, -22.0), '')
    xs, ys = grid.pixel_centres(0, grid.height)
    px, py = np.tile(xs, grid.height), np.repeat(ys, grid.width)
    error_variance = 0.0
    if case == 'samples on pixel centres':
        on_centre = np.unique(np.column_stack([np.clip(np.round((x + 20.0) / 17.0 - 0.5), 0, 60),
                                               np.clip(np.round((1010.0 - y) / 22.0 - 0.5), 0, 46)]), axis=0)
        x, y = xs[on_centre[:, 0].astype(int)], ys[on_centre[:, 1].astype(int)]
        z, error_variance = z[:len(x)], 0.03
    drift, pixel_drift = None, None
    if case == 'external drift':
        drift, pixel_drift = np.sqrt(x + y + 100.0), np.sqrt(px + py + 100.0)
    samples = kriging.prepare_samples(x, y, z, drift)
    model = VariogramModel('exponential', 0.05, 1.0, 400.0, error_variance=error_variance)
    radius = 150.0 if case == 'radius' else 0.0
    neighbours = 0 if case == 'radius' else 20
    frame = KrigingFrame(model, samples.x, samples.y, samples.z, samples.drift)
    walker = kriging_grid._ExactWalker(frame, grid, kriging.NeighbourSearch(frame, neighbours, radius),
                                       memory_mb=0.2)  # several row blocks
    assert walker.samples_on_centres == (case == 'samples on pixel centres')
    f0 = frame.drift_matrix(kriging.drift_array(pixel_drift, len(px))).reshape(grid.height, grid.width, -1)
    blocks = [walker.krige(row, rows, f0[row:row + rows], None) for row, rows in walker.row_blocks()]
    assert len(blocks) > 1
    prediction, variance = (np.concatenate([block[i] for block in blocks]).ravel() for i in (0, 1))
    expected = kriging.krige_points(samples, model, px, py, pixel_drift, neighbours, radius)
    np.testing.assert_allclose(prediction, expected[0], rtol=0, atol=1e-9)
    np.testing.assert_allclose(variance, expected[1], rtol=0, atol=1e-9)
    if case == 'radius':
        assert np.isnan(prediction).any() and np.isfinite(prediction).any()


@pytest.mark.parametrize('model, neighbours, radius', [
    (VariogramModel('exponential', 0.05, 1.0, 400.0, error_variance=0.03), 16, 0.0),
    (VariogramModel('power', 0.0, 1.0, 1000.0, 1.5), 16, 0.0),
    (VariogramModel('spherical', 0.1, 1.0, 500.0), 0, 120.0)])
def test_exact_grid_kriging_without_variance_predicts_as_each_pixel_alone(model, neighbours, radius):
    """Without a variance output only the prediction row of each system is built and applied (a dot
    product per pixel): the same predictions as krige_points to 1e-9, with an external drift, a sample
    on a pixel centre (where γ₀ is the measurement-error variance) and, with a search radius, sets of
    unequal size and pixels without enough samples (NaN)."""
    from rsgeochem.core.geostat.kriging_system import KrigingFrame
    x, y, z = synthetic(90, 8)
    grid = Grid(45, 38, (-20.0, 23.0, 0.0, 1010.0, 0.0, -27.0), '')
    xs, ys = grid.pixel_centres(0, grid.height)
    x[0], y[0] = xs[7], ys[5]
    px, py = np.tile(xs, grid.height), np.repeat(ys, grid.width)
    samples = kriging.prepare_samples(x, y, z, x - 0.5 * y)
    frame = KrigingFrame(model, samples.x, samples.y, samples.z, samples.drift)
    walker = kriging_grid._ExactWalker(frame, grid, kriging.NeighbourSearch(frame, neighbours, radius),
                                       memory_mb=0.2, variance=False)
    assert walker.samples_on_centres
    f0 = frame.drift_matrix((px - 0.5 * py)[:, None]).reshape(grid.height, grid.width, -1)
    blocks = [walker.krige(row, rows, f0[row:row + rows], None) for row, rows in walker.row_blocks()]
    assert len(blocks) > 1 and all(variance is None for _, variance in blocks)
    expected, _ = kriging.krige_points(samples, model, px, py, px - 0.5 * py, neighbours, radius)
    prediction = np.concatenate([block[0] for block in blocks]).ravel()
    np.testing.assert_allclose(prediction, expected, rtol=0, atol=1e-9)
    assert np.isnan(prediction).any() == (radius > 0) and np.isfinite(prediction).any()


def test_global_grid_kriging_without_variance_predicts_as_krige_points():
    """Global Kriging (every sample in one system) without a variance output applies the prediction
    row alone: the same predictions as krige_points, to 1e-9, with an external drift."""
    from rsgeochem.core.geostat.kriging_system import KrigingFrame
    x, y, z = synthetic(70, 5)
    grid = Grid(33, 21, (-10.0, 31.0, 0.0, 1005.0, 0.0, -48.0), '')
    xs, ys = grid.pixel_centres(0, grid.height)
    px, py = np.tile(xs, grid.height), np.repeat(ys, grid.width)
    samples = kriging.prepare_samples(x, y, z, x + y)
    model = VariogramModel('spherical', 0.1, 1.0, 600.0)
    frame = KrigingFrame(model, samples.x, samples.y, samples.z, samples.drift)
    walker = kriging_grid._GlobalWalker(frame, grid, memory_mb=0.05, variance=False)
    f0 = frame.drift_matrix((px + py)[:, None]).reshape(grid.height, grid.width, -1)
    blocks = [walker.krige(row, rows, f0[row:row + rows], None) for row, rows in walker.row_blocks()]
    assert len(blocks) > 1 and all(variance is None for _, variance in blocks)
    expected, _ = kriging.krige_points(samples, model, px, py, px + py)
    prediction = np.concatenate([block[0] for block in blocks]).ravel()
    np.testing.assert_allclose(prediction, expected, rtol=0, atol=1e-9)


def test_grid_kriging_is_exact_per_pixel_by_default(tmp_path):
    x, y, z = synthetic(80, 4)
    samples = kriging.prepare_samples(x, y, z)
    grid = Grid(40, 30, (0.0, 25.0, 0.0, 1000.0, 0.0, -33.0), '')
    summary = kriging_grid.krige_grid(samples, VariogramModel('spherical', 0.1, 1.0, 300.0), grid,
                                      tmp_path / 'p.tif', None, n_neighbours=10)
    assert (summary.mode, summary.block_pixels) == ('per pixel', 1)


# --- shared-block against per-pixel neighbourhoods ------------------------------------------------

def test_blocks_equal_per_pixel_when_every_pixel_has_the_same_neighbours(tmp_path):
    x, y, z = synthetic(20, 13)
    far = np.column_stack([x + 1e6, y + 1e6])  # far samples are never among the 20 nearest
    samples = kriging.prepare_samples(np.r_[x, far[:, 0]], np.r_[y, far[:, 1]], np.r_[z, z])
    model = VariogramModel('gaussian', 0.1, 1.0, 600.0)
    grid = Grid(37, 29, (0.0, 27.0, 0.0, 1000.0, 0.0, -34.0), '')
    outputs = {}
    for block in (1, 8):
        kriging_grid.krige_grid(samples, model, grid, tmp_path / f'p{block}.tif', tmp_path / f'v{block}.tif',
                                n_neighbours=20, block_pixels=block)
        outputs[block] = [gdal.Open(str(tmp_path / f'{k}{block}.tif')).ReadAsArray() for k in 'pv']
    xs, ys = grid.pixel_centres(0, grid.height)
    px, py = np.meshgrid(xs, ys)
    near = kriging.prepare_samples(x, y, z)
    reference = kriging.krige_points(near, model, px.ravel(), py.ravel())
    for block in (1, 8):
        np.testing.assert_allclose(outputs[block][0].ravel(), reference[0], atol=1e-5)
        np.testing.assert_allclose(outputs[block][1].ravel(), reference[1], atol=1e-5)


def test_blocks_without_variance_predict_as_with_it(tmp_path):
    """Shared blocks without a variance output (the prediction row alone, float32 like the full
    product) give the predictions of the full operator."""
    x, y, z = synthetic(90, 17)
    samples = kriging.prepare_samples(x, y, z)
    model = VariogramModel('exponential', 0.1, 1.0, 500.0)
    grid = Grid(45, 37, (0.0, 23.0, 0.0, 1000.0, 0.0, -27.0), '')
    for name, variance_path in (('with', tmp_path / 'v.tif'), ('without', None)):
        summary = kriging_grid.krige_grid(samples, model, grid, tmp_path / f'{name}.tif', variance_path,
                                          n_neighbours=12, block_pixels=6)
        assert summary.mode == 'shared blocks'
    with_variance, without = (gdal.Open(str(tmp_path / f'{name}.tif')).ReadAsArray()
                              for name in ('with', 'without'))
    np.testing.assert_allclose(without, with_variance, rtol=0, atol=1e-5)
    assert np.ptp(without) > 0.5


def test_blocks_stay_as_close_to_global_kriging_as_per_pixel_neighbourhoods(meuse, meuse_grid, gstat_grid,
                                                                            tmp_path):
    results = {}
    for name, neighbours, block in (('global', 0, 0), ('pixel', 20, 1), ('block', 20, 4)):
        kriging_grid.krige_grid(meuse, GSTAT_MODEL, meuse_grid, tmp_path / f'{name}.tif', None,
                                n_neighbours=neighbours, block_pixels=block)
        results[name] = at_cells(tmp_path / f'{name}.tif', meuse_grid, gstat_grid['x'], gstat_grid['y'])
    pixel_error = np.mean(np.abs(results['pixel'] - results['global']))
    block_error = np.mean(np.abs(results['block'] - results['global']))
    block_vs_pixel = np.abs(results['block'] - results['pixel'])
    # measured on the 3103 meuse.grid cells (20 neighbours, 4x4 blocks of 40 m): mean |pixel - global|
    # 0.042, mean |block - global| 0.042, mean |block - pixel| 0.0064 (max 0.11) log units; data SD 0.72
    assert block_error < 1.25 * pixel_error
    assert np.mean(block_vs_pixel) < 0.01 and np.max(block_vs_pixel) < 0.15


# --- input care (core) ---------------------------------------------------------------------------

def test_samples_are_cleaned_and_counted():
    x = np.array([0.0, 0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0])
    y = np.array([0.0, 0.0, 5.0, 10.0, 0.0, 5.0, 10.0, np.nan])
    z = np.array([1.0, 3.0, np.nan, 2.0, 5.0, 4.0, 0.0, 1.0])
    samples = kriging.prepare_samples(x, y, z, log_transform=True, min_samples=3)
    assert len(samples) == 4 and samples.merged == 1
    assert samples.skipped['with non-finite values'] == 2
    assert samples.skipped['with values <= 0 (no logarithm)'] == 1
    assert np.log(2.0) in samples.z or np.isclose(samples.z, np.log(2.0)).any()
    assert np.isclose(samples.z, (np.log(1.0) + np.log(3.0)) / 2).any()  # duplicate location: mean


def test_duplicate_locations_do_not_make_the_system_singular():
    x, y, z = synthetic(30, 17)
    samples = kriging.prepare_samples(np.r_[x, x[:5]], np.r_[y, y[:5]], np.r_[z, z[:5] + 1.0])
    assert len(samples) == 30 and samples.merged == 5
    prediction, variance = kriging.krige_points(samples, VariogramModel('spherical', 0.0, 1.0, 300.0),
                                                [500.0], [500.0])
    assert np.isfinite(prediction).all() and np.isfinite(variance).all()


# --- measurement error (gstat "Err", pykrige exact_values=False) --------------------------------

@pytest.mark.parametrize('share', [1.0, 0.4])
@pytest.mark.parametrize('neighbours', [0, 12])
def test_measurement_error_matches_pykrige_non_exact(share, neighbours):
    x, y, z = synthetic(60, 23)
    model = VariogramModel('spherical', 0.3, 1.0, 400.0, error_variance=0.3 * share)
    samples = kriging.prepare_samples(x, y, z)
    tx = np.concatenate([x[:20], np.linspace(20, 980, 15)])
    ty = np.concatenate([y[:20], np.linspace(30, 970, 15)])
    prediction, variance = kriging.krige_points(samples, model, tx, ty, n_neighbours=neighbours)
    theirs = pykrige_with_error(x, y, z, model)
    their_prediction, their_variance = theirs.execute('points', tx, ty, backend='loop',
                                                      n_closest_points=neighbours or None)
    np.testing.assert_allclose(prediction, their_prediction, atol=1e-9)
    np.testing.assert_allclose(variance, their_variance - model.error_variance, atol=1e-9)
    # smoothed at the samples: no longer the measured values
    assert np.sqrt(np.mean((prediction[:20] - z[:20]) ** 2)) > 0.01


def test_measurement_error_on_a_pure_nugget_is_the_mean_with_variance_sill_over_n():
    """Every difference is error: the error-free field is a constant, estimated by the sample mean
    with variance c / n (also at the samples)."""
    x, y, z = synthetic(40, 29)
    model = VariogramModel('spherical', 0.5, 0.0, 300.0, error_variance=0.5)
    samples = kriging.prepare_samples(x, y, z)
    for neighbours in (0, 40):
        prediction, variance = kriging.krige_points(samples, model, x, y, n_neighbours=neighbours)
        np.testing.assert_allclose(prediction, z.mean(), atol=1e-12)
        np.testing.assert_allclose(variance, 0.5 / 40, atol=1e-12)


@pytest.mark.parametrize('block', [1, 4, 0])
def test_measurement_error_grid_matches_points_on_pixel_centres(tmp_path, block):
    grid = Grid(50, 40, (0.0, 10.0, 0.0, 400.0, 0.0, -10.0), '')
    rng = np.random.default_rng(5)
    col, row = rng.choice(50, 30, replace=False), rng.choice(40, 30)
    x, y = 5.0 + 10.0 * col, 395.0 - 10.0 * row
    samples = kriging.prepare_samples(x, y, rng.normal(size=30))
    model = VariogramModel('exponential', 0.2, 1.0, 200.0, error_variance=0.15)
    neighbours = 30 if block else 0
    kriging_grid.krige_grid(samples, model, grid, tmp_path / 'p.tif', tmp_path / 'v.tif',
                            n_neighbours=neighbours, block_pixels=block)
    at = (row, col)
    prediction = gdal.Open(str(tmp_path / 'p.tif')).ReadAsArray()[at]
    variance = gdal.Open(str(tmp_path / 'v.tif')).ReadAsArray()[at]
    expected, expected_variance = kriging.krige_points(samples, model, x, y)  # 30 neighbours = global
    np.testing.assert_allclose(prediction, expected, atol=2e-5)
    np.testing.assert_allclose(variance, expected_variance, atol=2e-5)
    assert np.abs(prediction - samples.z).max() > 0.05


def test_measurement_error_leaves_cross_validation_unchanged(meuse, gstat_cv):
    """Leave-one-out predicts measured values (error included): same as without the error part."""
    with_error = dataclasses.replace(GSTAT_MODEL, error_variance=0.03)
    for neighbours in (0, 20):
        cv = kriging.leave_one_out(meuse, with_error, n_neighbours=neighbours)
        exact = kriging.leave_one_out(meuse, GSTAT_MODEL, n_neighbours=neighbours)
        np.testing.assert_allclose(cv.predicted, exact.predicted, atol=1e-9)
        np.testing.assert_allclose(cv.variance, exact.variance, atol=1e-9)


def test_fitted_nugget_holds_the_measurement_error(meuse):
    free = kriging.fit_for_samples(meuse, 'spherical').model
    assert free.error_variance == 0.0
    fitted = kriging.fit_for_samples(meuse, 'spherical', error_variance=0.02).model
    assert fitted.error_variance == 0.02 and fitted.nugget == pytest.approx(free.nugget, rel=1e-6)
    floor = kriging.fit_for_samples(meuse, 'spherical', error_variance=0.2).model  # above the free nugget
    assert floor.nugget == pytest.approx(0.2) and floor.error_variance == 0.2
    fixed = kriging.fit_for_samples(meuse, 'exponential', fit_nugget=False, error_variance=0.1).model
    assert fixed.nugget == pytest.approx(0.1)
    with pytest.raises(InputError, match='part of the nugget') as error:
        VariogramModel('spherical', 0.05, 1.0, 100.0, error_variance=0.1)
    assert error.value.parameter == 'MEASUREMENT_ERROR'


@pytest.mark.parametrize('x, z, parameter, message', [
    (np.arange(4.0), np.arange(4.0), 'INPUT', 'only 4 usable samples'),
    (np.arange(8.0), np.full(8, 2.5), 'FIELD', 'same value'),
])
def test_too_few_or_constant_samples_are_refused(x, z, parameter, message):
    with pytest.raises(InputError, match=message) as error:
        kriging.prepare_samples(x, x * 2, z)
    assert error.value.parameter == parameter


def test_collinear_drift_leaves_pixels_empty_instead_of_failing():
    x, y, z = synthetic(30, 19)
    drift = (x > 500).astype(float)  # constant within many small neighbourhoods
    targets = np.array([100.0, 900.0])
    for target in targets:  # the 3 nearest samples share one drift value: it duplicates the mean
        nearest = np.argsort(np.hypot(x - target, y - target))[:3]
        assert np.ptp(drift[nearest]) == 0
    samples = kriging.prepare_samples(x, y, z, drift)
    prediction, variance = kriging.krige_points(samples, VariogramModel('spherical', 0.1, 1.0, 300.0),
                                                targets, targets, [0.0, 1.0], n_neighbours=3)
    assert np.isnan(prediction).all() and np.isnan(variance).all()


# --- the Processing algorithm --------------------------------------------------------------------

def meuse_parameters(test_data, tmp_path, **extra):
    parameters = {'INPUT': str(test_data / 'meuse' / 'meuse.gpkg'), 'FIELD': 'zinc', 'LOG_TRANSFORM': True,
                  'REFERENCE_RASTER': str(test_data / 'meuse' / 'meuse_grid_covariates.tif'),
                  'N_NEIGHBOURS': 0, 'OUTPUT': str(tmp_path / 'pred.tif'),
                  'OUTPUT_VARIANCE': str(tmp_path / 'var.tif'), 'OUTPUT_HTML': str(tmp_path / 'k.html')}
    parameters.update(GIVEN)
    parameters.update(extra)
    return parameters


def test_algorithm_matches_gstat(qgis_app, test_data, tmp_path, meuse_grid, gstat_grid, gstat_cv):
    layers = ['OUTPUT', 'OUTPUT_VARIANCE', 'OUTPUT_CV']
    result, loaded = run_as_in_the_toolbox('kriging', meuse_parameters(
        test_data, tmp_path, GRID_EXTENT=1, OUTPUT_CV=str(tmp_path / 'cv.gpkg')), layers)
    assert [loaded[key].name for key in layers] == [
        'Kriged ln(zinc)', 'Kriging variance of ln(zinc)',
        'Kriging cross-validation of ln(zinc) (leave-one-out)']
    x, y = gstat_grid['x'], gstat_grid['y']
    np.testing.assert_allclose(at_cells(result['OUTPUT'], meuse_grid, x, y), gstat_grid['pred'],
                               atol=GRID_ATOL)
    np.testing.assert_allclose(at_cells(result['OUTPUT_VARIANCE'], meuse_grid, x, y), gstat_grid['var'],
                               atol=GRID_ATOL)
    assert result['CV_RMSE'] == pytest.approx(np.sqrt(np.mean(gstat_cv['residual'] ** 2)), rel=1e-9)
    assert result['CV_ME'] == pytest.approx(np.mean(gstat_cv['residual']), abs=1e-9)
    assert result['CV_MSDR'] == pytest.approx(np.mean(gstat_cv['zscore'] ** 2), rel=1e-8)
    assert result['N_SAMPLES'] == 155 and result['MODEL'] == 'spherical'
    dataset = gdal.OpenEx(str(tmp_path / 'cv.gpkg'))  # kept alive while its layer is read
    predicted = {(round(f['x']), round(f['y'])): f['predicted'] for f in dataset.GetLayer(0)}
    expected = {(round(a), round(b)): p
                for a, b, p in zip(gstat_cv['x'], gstat_cv['y'], gstat_cv['var1.pred'])}
    assert predicted.keys() == expected.keys()
    np.testing.assert_allclose([predicted[k] for k in expected], list(expected.values()), atol=1e-9)
    assert 'data:image/png;base64' in (tmp_path / 'k.html').read_text()


def test_algorithm_samples_extent_within_the_reference_is_a_window_of_the_whole_grid(run_alg, test_data,
                                                                                     tmp_path):
    """GRID_EXTENT 2: the samples' extent plus margin cut to the reference raster (78 x 104 pixels of
    40 m from 178440, 333760). Meuse samples span x 178605-181390, y 329714-333611: a 100 m margin
    gives columns 1-76 and rows 1-103 (by hand: floor(65/40), ceil(3050/40); floor(49/40), ceil(4146/40)),
    whose values are those of the whole-reference Kriging at the same pixels; a 300 m margin reaches
    beyond the raster on every side and is cut to the whole raster."""
    whole = run_alg('kriging', meuse_parameters(test_data, tmp_path, GRID_EXTENT=1))
    whole_prediction, whole_variance = (gdal.Open(whole[key]).ReadAsArray()
                                        for key in ('OUTPUT', 'OUTPUT_VARIANCE'))
    window = run_alg('kriging', meuse_parameters(
        test_data, tmp_path, GRID_EXTENT=2, MARGIN=100.0, OUTPUT=str(tmp_path / 'window.tif'),
        OUTPUT_VARIANCE=str(tmp_path / 'window_var.tif')))
    grid = raster_info(window['OUTPUT']).grid
    assert (grid.width, grid.height) == (76, 103)
    np.testing.assert_allclose(grid.geotransform, (178480.0, 40.0, 0.0, 333720.0, 0.0, -40.0))
    np.testing.assert_array_equal(gdal.Open(window['OUTPUT']).ReadAsArray(), whole_prediction[1:104, 1:77])
    np.testing.assert_array_equal(gdal.Open(window['OUTPUT_VARIANCE']).ReadAsArray(),
                                  whole_variance[1:104, 1:77])
    cut = run_alg('kriging', meuse_parameters(test_data, tmp_path, GRID_EXTENT=2, MARGIN=300.0,
                                              OUTPUT=str(tmp_path / 'cut.tif'), OUTPUT_VARIANCE=None))
    assert raster_info(cut['OUTPUT']).grid.same_as(raster_info(whole['OUTPUT']).grid)


def test_algorithm_transforms_points_from_another_crs(run_alg, test_data, tmp_path, meuse_grid, gstat_grid):
    path = str(tmp_path / 'meuse_wgs84.gpkg')
    gdal.VectorTranslate(path, str(test_data / 'meuse' / 'meuse.gpkg'), dstSRS='EPSG:4326')
    result = run_alg('kriging', meuse_parameters(test_data, tmp_path, INPUT=path, GRID_EXTENT=1))
    x, y = gstat_grid['x'], gstat_grid['y']
    # a round trip through WGS84 moves points by < 1 mm: predictions change by ~1e-6
    np.testing.assert_allclose(at_cells(result['OUTPUT'], meuse_grid, x, y), gstat_grid['pred'], atol=1e-5)


def test_algorithm_external_drift_matches_pykrige(run_alg, test_data, tmp_path, meuse_grid, gstat_grid):
    from pykrige.uk import UniversalKriging
    sqrt_dist = str(tmp_path / 'sqrtdist.tif')
    gdal.Translate(sqrt_dist, str(test_data / 'meuse' / 'meuse_grid_covariates.tif'), bandList=[2])
    model = {'VARIOGRAM_MODEL': 'exponential', 'NUGGET': 0.05, 'SILL': 0.2, 'RANGE': 900.0}
    result = run_alg('kriging', meuse_parameters(test_data, tmp_path, REFERENCE_RASTER=None, GRID_EXTENT=1,
                                                 DRIFT_RASTERS=[sqrt_dist], **model))
    table = read_csv(test_data / 'meuse' / 'meuse.csv')
    x, y = table['x'].astype(float), table['y'].astype(float)
    drift_at_samples = at_cells(sqrt_dist, meuse_grid, x, y)
    theirs = UniversalKriging(x, y, np.log(table['zinc'].astype(float)), variogram_model='exponential',
                              variogram_parameters={'psill': 0.2, 'range': 900.0, 'nugget': 0.05},
                              drift_terms=['specified'], specified_drift=[drift_at_samples])
    gx, gy = gstat_grid['x'], gstat_grid['y']
    prediction, variance = theirs.execute('points', gx, gy,
                                          specified_drift_arrays=[at_cells(sqrt_dist, meuse_grid, gx, gy)])
    np.testing.assert_allclose(at_cells(result['OUTPUT'], meuse_grid, gx, gy), prediction, atol=GRID_ATOL)
    np.testing.assert_allclose(at_cells(result['OUTPUT_VARIANCE'], meuse_grid, gx, gy), variance,
                               atol=GRID_ATOL)
    # outside the meuse.grid cells the drift is nodata, so is the prediction
    output = gdal.Open(result['OUTPUT'])
    band = output.GetRasterBand(1)
    assert (band.ReadAsArray() == band.GetNoDataValue()).sum() == 78 * 104 - 3103


def test_algorithm_fits_skips_nulls_and_snaps_to_the_reference(run_alg, test_data, tmp_path, meuse_grid):
    parameters = meuse_parameters(test_data, tmp_path, FIELD='om', LOG_TRANSFORM=False, SILL=0, RANGE=0,
                                  VARIOGRAM_MODEL='spherical', N_NEIGHBOURS=24, MARGIN=100.0)
    result = run_alg('kriging', parameters)
    assert result['N_SAMPLES'] == 153  # two NULL om values skipped
    grid = raster_info(result['OUTPUT']).grid
    col, row = meuse_grid.to_pixel(grid.geotransform[0], grid.geotransform[3])
    assert col == pytest.approx(round(col)) and row == pytest.approx(round(row))
    assert grid.pixel_width == meuse_grid.pixel_width and result['RANGE'] > 0


def point_layer(xs, ys, values, crs='EPSG:28992'):
    from qgis.core import QgsFeature, QgsGeometry, QgsPointXY, QgsVectorLayer
    layer = QgsVectorLayer(f'Point?crs={crs}&field=v:double', 'points', 'memory')
    features = []
    for x, y, value in zip(xs, ys, values):
        feature = QgsFeature(layer.fields())
        feature.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(float(x), float(y))))
        feature.setAttributes([None if value is None else float(value)])
        features.append(feature)
    layer.dataProvider().addFeatures(features)
    return layer


def run_points(run_alg, tmp_path, xs, ys, values, crs='EPSG:28992', **extra):
    parameters = {'INPUT': point_layer(xs, ys, values, crs), 'FIELD': 'v', 'OUTPUT': str(tmp_path / 'p.tif'),
                  'OUTPUT_VARIANCE': str(tmp_path / 'v.tif'), 'PIXEL_SIZE': 25.0, 'N_NEIGHBOURS': 0}
    parameters.update(extra)
    return run_alg('kriging', parameters)


def test_algorithm_merges_duplicates_and_skips_null_and_nan(run_alg, tmp_path):
    x, y, z = synthetic(20, 23)
    values = [*z, None, float('nan'), z[0] + 1.0]
    result = run_points(run_alg, tmp_path, [*x, 1.0, 2.0, x[0]], [*y, 1.0, 2.0, y[0]], values)
    assert result['N_SAMPLES'] == 20
    assert np.isfinite(gdal.Open(result['OUTPUT']).ReadAsArray()).all()


@pytest.mark.parametrize('case, key, message', [
    ('few', 'INPUT', 'usable samples'),
    ('constant', 'FIELD', 'same value'),
    ('geographic', 'INPUT', 'projected'),
    ('outside', 'INPUT', 'none of the'),
    ('outside_window', 'INPUT', 'does not reach'),
    ('half_given', 'RANGE', 'both SILL and RANGE'),
    ('auto_given', 'VARIOGRAM_MODEL', 'not "auto"'),
])
def test_algorithm_bad_inputs_name_the_parameter(run_alg, test_data, tmp_path, case, key, message):
    from qgis.core import QgsProcessingException
    x, y, z = synthetic(20, 29)
    x, y = x + 179000.0, y + 330000.0
    reference = str(test_data / 'meuse' / 'meuse_grid_covariates.tif')
    arguments = {
        'few': (x[:4], y[:4], z[:4], {}),
        'constant': (x, y, np.ones(20), {}),
        'geographic': (x / 1e5, y / 1e5 - 3.0, z, {'crs': 'EPSG:4326'}),
        'outside': (x - 50000.0, y, z, {'REFERENCE_RASTER': reference, 'GRID_EXTENT': 1}),
        'outside_window': (x - 50000.0, y, z, {'REFERENCE_RASTER': reference, 'GRID_EXTENT': 2}),
        'half_given': (x, y, z, {'SILL': 1.0}),
        'auto_given': (x, y, z, {'SILL': 1.0, 'RANGE': 300.0, 'VARIOGRAM_MODEL': 'auto'}),
    }[case]
    with pytest.raises(QgsProcessingException, match=message) as error:
        run_points(run_alg, tmp_path, *arguments[:3], **arguments[3])
    assert str(error.value).startswith(f'{key}:') or f'{key}:' in str(error.value)
    assert not (tmp_path / 'p.tif').exists()


def test_algorithm_refuses_a_geographic_reference_raster(run_alg, test_data, tmp_path):
    from qgis.core import QgsProcessingException
    geographic = str(tmp_path / 'wgs84.tif')
    gdal.Warp(geographic, str(test_data / 'meuse' / 'meuse_grid_covariates.tif'), dstSRS='EPSG:4326')
    with pytest.raises(QgsProcessingException, match='REFERENCE_RASTER: .*geographic.*projected'):
        run_alg('kriging', meuse_parameters(test_data, tmp_path, REFERENCE_RASTER=geographic))


def test_cancel_leaves_no_output(meuse, meuse_grid, tmp_path):
    from rsgeochem.core.errors import CancelledError
    calls = []

    def cancel():
        calls.append(1)
        return len(calls) > 3

    with pytest.raises(CancelledError):
        kriging_grid.krige_grid(meuse, GSTAT_MODEL, meuse_grid, tmp_path / 'p.tif', tmp_path / 'v.tif',
                                n_neighbours=8, block_pixels=2, memory_mb=1, cancel=cancel)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize('change, message', [({'outputBounds': [178453, 333773, 181573, 329613]}, 'shifted'),
                                             ({'xRes': 50, 'yRes': 50}, 'pixels of another size'),
                                             ({'outputSRS': 'EPSG:3035'}, 'another CRS')])
def test_algorithm_refuses_a_drift_raster_off_the_grid(run_alg, test_data, tmp_path, change, message):
    """A drift raster shifted by 13 m (a third of a 40 m pixel), with 50 m pixels, or in another CRS."""
    from qgis.core import QgsProcessingException
    off = str(tmp_path / 'off.tif')
    gdal.Translate(off, str(test_data / 'meuse' / 'meuse_grid_covariates.tif'), bandList=[2], **change)
    with pytest.raises(QgsProcessingException, match=f'DRIFT_RASTERS.*{message}'):
        run_alg('kriging', meuse_parameters(test_data, tmp_path, DRIFT_RASTERS=[off]))


def test_qgis_process_run(qgis_process, test_data, tmp_path, meuse_grid, gstat_grid):
    output, variance = tmp_path / 'qp_pred.tif', tmp_path / 'qp_var.tif'
    arguments = [f'{key}={value}' for key, value in meuse_parameters(
        test_data, tmp_path, GRID_EXTENT=1, OUTPUT=str(output), OUTPUT_VARIANCE=str(variance)).items()]
    result = qgis_process('run', 'rsgeochem:kriging', '--', *arguments)
    assert 'CV_RMSE' in result.stdout
    prediction = at_cells(output, meuse_grid, gstat_grid['x'], gstat_grid['y'])
    np.testing.assert_allclose(prediction, gstat_grid['pred'], atol=GRID_ATOL)


def test_a_model_passes_the_variogram_outputs_to_kriging(qgis_app, test_data, tmp_path, meuse_grid,
                                                          gstat_grid):
    """Graphical Modeler chain: variogram's NUGGET, SILL, RANGE and MODEL feed kriging's inputs."""
    from qgis.core import (
        QgsProcessingContext,
        QgsProcessingFeedback,
        QgsProcessingModelAlgorithm,
        QgsProcessingModelChildAlgorithm,
        QgsProcessingModelChildParameterSource,
    )
    model = QgsProcessingModelAlgorithm('chain', 'tests')
    static = QgsProcessingModelChildParameterSource.fromStaticValue
    variogram = QgsProcessingModelChildAlgorithm('rsgeochem:variogram')
    variogram.setChildId('variogram')
    points = str(test_data / 'meuse' / 'meuse.gpkg')
    for key, value in (('INPUT', points), ('FIELD', 'zinc'), ('LOG_TRANSFORM', True),
                       ('VARIOGRAM_MODEL', 'spherical'), ('OUTPUT_HTML', str(tmp_path / 'v.html'))):
        variogram.addParameterSources(key, [static(value)])
    model.addChildAlgorithm(variogram)
    krige = QgsProcessingModelChildAlgorithm('rsgeochem:kriging')
    krige.setChildId('kriging')
    chained = {'NUGGET': 'NUGGET', 'SILL': 'SILL', 'RANGE': 'RANGE', 'VARIOGRAM_MODEL': 'MODEL'}
    for key, value in meuse_parameters(test_data, tmp_path, GRID_EXTENT=1).items():
        if key in chained:
            value = QgsProcessingModelChildParameterSource.fromChildOutput('variogram', chained[key])
        else:
            value = static(value)
        krige.addParameterSources(key, [value])
    model.addChildAlgorithm(krige)
    context = QgsProcessingContext()
    _, ok = model.run({}, context, QgsProcessingFeedback())
    assert ok
    prediction = at_cells(tmp_path / 'pred.tif', meuse_grid, gstat_grid['x'], gstat_grid['y'])
    # the model fitted by rsgeochem:variogram is within 1e-4 of gstat's: predictions within 5e-5
    np.testing.assert_allclose(prediction, gstat_grid['pred'], atol=5e-5)
