"""PCA: data of known covariance against numpy eig, real Sentinel-2 against scikit-learn, masks on
another grid, tables/report and bad inputs."""
import numpy as np
import pytest
from osgeo import gdal, osr

from rsgeochem.core.errors import InputError
from rsgeochem.core.imagery import pca
from rsgeochem.core.raster import blockio

S2 = 'sentinel2/s2_para_subset_80x64.tif'
# known construction: covariance Q diag(LAMBDA) Q^T with Q a rotation
LAMBDA = np.array([9.0, 4.0, 1.0, 0.25])


def rotation(size, seed=4):
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(size, size)))
    return q * np.sign(np.diag(r))


def known_sample(count, seed=0):
    q = rotation(len(LAMBDA))
    latent = np.random.default_rng(seed).normal(size=(count, len(LAMBDA))) * np.sqrt(LAMBDA)
    return latent @ q.T + np.array([5.0, -2.0, 0.5, 10.0]), q


def align_signs(vectors, reference):
    return vectors * np.sign(np.sum(vectors * reference, axis=0))


def test_fit_matches_numpy_eig_and_known_construction():
    sample, q = known_sample(20000)
    model = pca.fit_pca(sample)
    values, vectors = np.linalg.eig(np.cov(sample, rowvar=False))  # general eig, independent of eigh
    order = np.argsort(values)[::-1]
    np.testing.assert_allclose(model.eigenvalues, values[order].real, rtol=1e-10)
    np.testing.assert_allclose(model.vectors, align_signs(vectors[:, order].real, model.vectors), atol=1e-8)
    np.testing.assert_allclose(model.eigenvalues, LAMBDA, rtol=0.05)  # sampling error of n=20000
    np.testing.assert_allclose(np.abs(q.T @ model.vectors), np.eye(4), atol=0.03)
    scores = model.transform(sample, 4)
    np.testing.assert_allclose(np.cov(scores, rowvar=False), np.diag(model.eigenvalues), atol=1e-8)
    # the largest coefficient of every component is positive
    assert all(model.vectors[np.argmax(np.abs(model.vectors[:, i])), i] > 0 for i in range(4))


def test_standardised_fit_is_correlation_pca():
    sample, _ = known_sample(5000, seed=2)
    sample[:, 1] *= 1000.0  # different units must not matter
    model = pca.fit_pca(sample, standardize=True)
    values = np.sort(np.linalg.eigvals(np.corrcoef(sample, rowvar=False)).real)[::-1]
    np.testing.assert_allclose(model.eigenvalues, values, rtol=1e-10)
    assert model.eigenvalues.sum() == pytest.approx(4.0)


def test_sampler_keeps_all_or_a_uniform_subset():
    rows = np.arange(1000, dtype=float).reshape(-1, 1) * np.ones((1, 2))
    everything = pca.PixelSampler(5000)
    for start in range(0, 1000, 300):
        everything.add(rows[start:start + 300])
    assert sorted(everything.sample()[:, 0]) == list(range(1000)) and everything.seen == 1000
    subset = pca.PixelSampler(200, seed=3)
    for start in range(0, 1000, 70):
        subset.add(rows[start:start + 70])
    picked = subset.sample()[:, 0]
    assert len(picked) == len(set(picked)) == 200
    # uniform: as many from the first blocks as from the last (binomial sd about 6 per half)
    assert abs(np.sum(picked < 500) - 100) < 25


def test_component_count_by_number_or_variance_target():
    ratio = np.array([0.6, 0.3, 0.1])
    assert pca.component_count(ratio, 0, 0.9) == 2
    assert pca.component_count(ratio, 0, 0.91) == 3
    assert pca.component_count(ratio, 0, 1.0) == 3
    assert pca.component_count(ratio, 1, 1.0) == 1
    with pytest.raises(InputError, match='COMPONENTS'):
        pca.component_count(ratio, 5, 1.0, 'COMPONENTS')


def test_fit_refuses_too_few_pixels_and_constant_bands():
    with pytest.raises(InputError, match='INPUT: only 0 valid pixels'):
        pca.fit_pca(np.empty((0, 3)), parameter='INPUT', band_names=['a', 'b', 'c'])
    sample = np.random.default_rng(1).normal(size=(50, 3))
    sample[:, 2] = 7.0
    with pytest.raises(InputError, match='band.* c are constant'):
        pca.fit_pca(sample, standardize=True, band_names=['a', 'b', 'c'])


# ---------------------------------------------------------------- algorithm

def read(path):
    dataset = gdal.Open(str(path))
    array = np.ma.masked_equal(dataset.ReadAsArray().astype(np.float64), -9999.0)
    return array, [dataset.GetRasterBand(i + 1).GetDescription() for i in range(dataset.RasterCount)]


def test_sentinel2_matches_scikit_learn(run_alg, test_data, tmp_path):
    from qgis.core import QgsVectorLayer
    from sklearn.decomposition import PCA
    source = test_data / S2
    result = run_alg('principalcomponents', {
        'INPUT': str(source), 'BANDS': [2, 3, 4, 8, 11, 12], 'VARIANCE_TARGET': 99.0,
        'OUTPUT': str(tmp_path / 'pc.tif'), 'OUTPUT_TABLE': str(tmp_path / 'pc.csv'),
        'OUTPUT_HTML': str(tmp_path / 'pc.html')})
    bands = gdal.Open(str(source)).ReadAsArray().astype(np.float64)[[1, 2, 3, 7, 10, 11]]
    pixels = bands.reshape(6, -1).T
    reference = PCA().fit(pixels)  # every pixel: 5120 < MAX_SAMPLES
    kept = int(np.searchsorted(np.cumsum(reference.explained_variance_ratio_), 0.99) + 1)
    output, names = read(result['OUTPUT'])
    assert names == [f'PC{i + 1}' for i in range(kept)] and 1 < kept < 6
    expected = reference.transform(pixels)[:, :kept].T
    got = output.reshape(kept, -1)
    expected *= np.sign(np.sum(expected * got, axis=1))[:, np.newaxis]
    np.testing.assert_allclose(got, expected, atol=1e-5 * np.abs(expected).max())
    table = QgsVectorLayer(result['OUTPUT_TABLE'], 'table', 'ogr')
    rows = list(table.getFeatures())
    assert len(rows) == 6 and table.fields().names()[:5] == ['component', 'eigenvalue', 'variance_pct',
                                                             'cumulative_pct', 'in_output']
    assert table.fields().names()[5:] == ['B2', 'B3', 'B4', 'B8', 'B11', 'B12']
    np.testing.assert_allclose([float(f['variance_pct']) for f in rows],
                               100 * reference.explained_variance_ratio_, rtol=1e-6)
    np.testing.assert_allclose(np.abs([[float(f[n]) for n in ('B2', 'B3', 'B4', 'B8', 'B11', 'B12')]
                                       for f in rows]), np.abs(reference.components_), atol=1e-6)
    report = (tmp_path / 'pc.html').read_text()
    assert 'PC2:' in report and 'data:image/png;base64' in report


def test_blockwise_sampled_fit_recovers_known_covariance(run_alg, tmp_path):
    sample, q = known_sample(1000 * 400, seed=7)
    raster = sample.T.reshape(4, 400, 1000)
    grid = blockio.Grid(1000, 400, (0.0, 10.0, 0.0, 4000.0, 0.0, -10.0), '')
    source = blockio.write_raster(tmp_path / 'known.tif', grid, raster)
    result = run_alg('principalcomponents', {'INPUT': source, 'COMPONENTS': 2, 'MAX_SAMPLES': 50000,
                                             'BLOCK_MEMORY_MB': 16, 'OUTPUT': str(tmp_path / 'pc.tif')})
    output, _ = read(result['OUTPUT'])
    scores = output.reshape(2, -1)
    np.testing.assert_allclose(scores.var(axis=1, ddof=1), LAMBDA[:2], rtol=0.03)
    assert abs(np.corrcoef(scores)[0, 1]) < 0.02
    # scores are the projections on the known axes (up to sign)
    projection = ((sample - sample.mean(axis=0)) @ q[:, :2]).T
    for component in range(2):
        assert abs(np.corrcoef(scores[component], projection[component])[0, 1]) > 0.99


def make_mask_on_other_crs(source, tmp_path):
    """Keep the right half of the image (columns >= 40), then warp the mask to UTM 21S."""
    info = blockio.raster_info(source)
    keep = np.zeros((info.grid.height, info.grid.width))
    keep[:, 40:] = 1
    same_grid = blockio.write_raster(tmp_path / 'mask_4326.tif', info.grid, keep, nodata=255)
    utm = osr.SpatialReference()
    utm.ImportFromEPSG(32721)
    other = str(tmp_path / 'mask_utm.tif')
    gdal.Warp(other, same_grid, dstSRS=utm.ExportToWkt(), xRes=10.0, yRes=10.0, resampleAlg='near')
    return other, keep.astype(bool)


def test_mask_on_other_crs_is_resampled_and_said(run_alg, test_data, tmp_path):
    import re

    from rsgeochem.test.test_surfacemask import LogFeedback
    source = str(test_data / S2)
    mask, keep = make_mask_on_other_crs(source, tmp_path)
    feedback = LogFeedback()
    result = run_alg('principalcomponents', {'INPUT': source, 'MASK': mask, 'COMPONENTS': 1,
                                             'OUTPUT': str(tmp_path / 'pc.tif')}, feedback=feedback)
    assert any('MASK: the mask is on another grid/CRS' in line and 'nearest-neighbour' in line
               for line in feedback.lines)
    valid = ~np.ma.getmaskarray(read(result['OUTPUT'])[0])  # one component: a 2-D array
    assert not valid[:, :38].any() and valid[:, 42:].all()  # 10 m vs ~10 m pixels: edge columns may shift
    assert (valid == keep).mean() > 0.97
    pattern = r'fitted on (\d+) of (\d+) valid pixels \(mask applied\)'
    fitted = [re.search(pattern, line) for line in feedback.lines]
    sampled, seen = next(map(int, match.groups()) for match in fitted if match)
    assert sampled == seen == valid.sum()


def test_bad_inputs_name_the_parameter(run_alg, test_data, tmp_path):
    from qgis.core import QgsProcessingException
    source = str(test_data / S2)
    with pytest.raises(QgsProcessingException, match='MASK: the mask has 12 bands'):
        run_alg('principalcomponents', {'INPUT': source, 'MASK': source, 'OUTPUT': str(tmp_path / 'o.tif')})
    with pytest.raises(QgsProcessingException, match='BANDS: choose at least two bands'):
        run_alg('principalcomponents', {'INPUT': source, 'BANDS': [3], 'OUTPUT': str(tmp_path / 'o.tif')})
    with pytest.raises(QgsProcessingException, match='COMPONENTS: 7 components asked for but only 6'):
        run_alg('principalcomponents', {'INPUT': source, 'BANDS': [1, 2, 3, 4, 5, 6], 'COMPONENTS': 7,
                                        'OUTPUT': str(tmp_path / 'o.tif')})
    grid = blockio.raster_info(source).grid
    empty = blockio.write_raster(tmp_path / 'empty.tif', grid, np.full((3, grid.height, grid.width), -9999.0))
    with pytest.raises(QgsProcessingException, match='INPUT: only 0 valid pixels'):
        run_alg('principalcomponents', {'INPUT': empty, 'OUTPUT': str(tmp_path / 'o.tif')})
    assert not (tmp_path / 'o.tif').exists()


def test_qgis_process_writes_scores_and_loadings_table(qgis_process, tmp_path):
    sample, _ = known_sample(40 * 50, seed=5)
    grid = blockio.Grid(50, 40, (0.0, 10.0, 0.0, 400.0, 0.0, -10.0), '')
    source = blockio.write_raster(tmp_path / 'known.tif', grid, sample.T.reshape(4, 40, 50))
    scores_path, table_path = tmp_path / 'pc.tif', tmp_path / 'loadings.csv'
    qgis_process('run', 'rsgeochem:principalcomponents', '--', f'INPUT={source}', 'COMPONENTS=2',
                 f'OUTPUT={scores_path}', f'OUTPUT_TABLE={table_path}')
    lines = table_path.read_text().splitlines()
    assert lines[0].split(',')[:5] == ['component', 'eigenvalue', 'variance_pct', 'cumulative_pct',
                                       'in_output'] and len(lines) == 5
    # independent reference: eigenvalues of the sample covariance by numpy's general eig
    expected = np.sort(np.linalg.eigvals(np.cov(sample, rowvar=False)).real)[::-1]
    np.testing.assert_allclose([float(line.split(',')[1]) for line in lines[1:]], expected, rtol=1e-6)
    output, names = read(scores_path)
    assert names == ['PC1', 'PC2']
    np.testing.assert_allclose(output.reshape(2, -1).var(axis=1, ddof=1), expected[:2], rtol=1e-5)
