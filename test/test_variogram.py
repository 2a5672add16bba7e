"""Variogram: experimental variogram and weighted fit against gstat 2.1.0 on Meuse log(zinc),
model functions against pykrige's, exact recovery of known models, and the Processing algorithm."""
import numpy as np
import pytest

from rsgeochem.core.errors import InputError
from rsgeochem.core.geostat import variogram

# gstat fit.variogram(variogram(log(zinc)~1, meuse), vgm(1, "Sph", 900, 1)) (test/data/meuse/gstat)
GSTAT_NUGGET, GSTAT_PSILL, GSTAT_RANGE = 0.0506624268192143, 0.590607802210119, 897.020909797001
# gstat stops its Gauss-Newton iterations at a relative SSE change of 1e-6; our fit is the exact
# optimum of the same objective, so the parameters agree to about 1e-4 relative (measured 4e-5).
FIT_RTOL = 1e-4


def read_table(path):
    return np.genfromtxt(path, delimiter=',', names=True, dtype=None, encoding='utf-8')


@pytest.fixture(scope='module')
def meuse(test_data):
    table = read_table(test_data / 'meuse' / 'meuse.csv')
    return table['x'].astype(float), table['y'].astype(float), np.log(table['zinc'].astype(float))


@pytest.fixture(scope='module')
def gstat_experimental(test_data):
    return read_table(test_data / 'meuse' / 'gstat' / 'ok_empirical_variogram.csv')


def test_experimental_variogram_matches_gstat(meuse, gstat_experimental):
    experimental = variogram.experimental_variogram(*meuse)
    np.testing.assert_array_equal(experimental.pairs, gstat_experimental['np'])
    np.testing.assert_allclose(experimental.distance, gstat_experimental['dist'], rtol=1e-12)
    np.testing.assert_allclose(experimental.gamma, gstat_experimental['gamma'], rtol=1e-12)


def gstat_method7_sse(experimental, model):
    """gstat fit.variogram's objective for fit.method 7: Σ N_j / h_j² (γ̂_j - γ(h_j))² (Pebesma 2004)."""
    weights = experimental.pairs / experimental.distance ** 2
    return float(np.sum(weights * (experimental.gamma - model(experimental.distance)) ** 2))


def test_spherical_fit_matches_gstat(meuse):
    experimental = variogram.experimental_variogram(*meuse)
    model = variogram.fit_variogram(experimental, 'spherical')
    np.testing.assert_allclose([model.nugget, model.psill, model.range],
                               [GSTAT_NUGGET, GSTAT_PSILL, GSTAT_RANGE], rtol=FIT_RTOL)
    gstat = variogram.VariogramModel('spherical', GSTAT_NUGGET, GSTAT_PSILL, GSTAT_RANGE)
    # same objective: ours is not worse than gstat's optimum
    ours, theirs = gstat_method7_sse(experimental, model), gstat_method7_sse(experimental, gstat)
    assert ours <= theirs * (1 + 1e-9)


@pytest.mark.parametrize('name, pykrige_name, parameters', [
    ('spherical', 'spherical', (0.3, 0.7, 500.0)),
    ('exponential', 'exponential', (0.3, 0.7, 500.0)),
    ('gaussian', 'gaussian', (0.3, 0.7, 500.0)),
    ('linear', 'linear', (0.3, 0.7, 500.0)),
    ('power', 'power', (0.3, 0.7, 500.0, 1.4)),
])
def test_models_match_pykrige_functions(name, pykrige_name, parameters):
    from pykrige import variogram_models
    nugget, psill, range_ = parameters[:3]
    exponent = parameters[3] if len(parameters) > 3 else 1.0
    model = variogram.VariogramModel(name, nugget, psill, range_, exponent)
    h = np.linspace(1.0, 1500.0, 200)
    if name == 'linear':
        theirs = variogram_models.linear_variogram_model([psill / range_, nugget], h)
    elif name == 'power':
        theirs = variogram_models.power_variogram_model([psill / range_ ** exponent, exponent, nugget], h)
    else:
        function = getattr(variogram_models, f'{pykrige_name}_variogram_model')
        theirs = function([psill, range_, nugget], h)
    np.testing.assert_allclose(model(h), theirs, rtol=1e-12)
    assert model(0.0) == 0.0  # γ(0) = 0 even with a nugget


def test_practical_ranges():
    for name, fraction in (('spherical', 1.0), ('exponential', 1 - np.exp(-3.0)),
                           ('gaussian', 1 - np.exp(-(7 / 4) ** 2))):
        model = variogram.VariogramModel(name, 0.0, 2.0, 100.0)
        assert model(100.0) == pytest.approx(2.0 * fraction, rel=1e-12)
    assert variogram.VariogramModel('spherical', 0.1, 2.0, 100.0)(1e6) == pytest.approx(2.1)


@pytest.mark.parametrize('truth', [
    variogram.VariogramModel('spherical', 0.2, 1.5, 700.0),
    variogram.VariogramModel('exponential', 0.1, 1.0, 900.0),
    variogram.VariogramModel('gaussian', 0.3, 0.8, 500.0),
    variogram.VariogramModel('linear', 0.2, 1.1, 1500.0),
    variogram.VariogramModel('power', 0.05, 0.9, 1500.0, 1.3),
])
def test_fit_recovers_a_known_model(truth):
    distance = np.linspace(50.0, 1450.0, 15)
    experimental = variogram.ExperimentalVariogram(np.full(15, 100.0), distance, truth(distance), 1500.0,
                                                   100.0)
    fitted = variogram.fit_variogram(experimental, truth.name)
    np.testing.assert_allclose([fitted.nugget, fitted.psill, fitted.range, fitted.exponent],
                               [truth.nugget, truth.psill, truth.range, truth.exponent], rtol=1e-5)


def test_range_is_bounded_by_the_samples_diagonal_and_warned_about():
    """A variogram that rises linearly over every lag has no sill: a bounded model's range runs to its
    upper bound, the samples' diagonal, and the fit says so. A flat one (pure nugget) is warned about
    too. The Meuse fit (a clear sill at 897 m) is not."""
    distance = np.linspace(50.0, 1450.0, 15)
    rising = variogram.ExperimentalVariogram(np.full(15, 100.0), distance, 0.1 + distance / 1000.0, 1500.0,
                                             100.0, diagonal=4500.0)
    model = variogram.fit_variogram(rising, 'spherical')
    assert model.range == pytest.approx(4500.0, rel=1e-6)
    assert 'upper bound' in ' '.join(variogram.bound_warnings(model, rising))
    flat = variogram.ExperimentalVariogram(np.full(15, 100.0), distance, np.full(15, 0.8), 1500.0, 100.0,
                                           diagonal=4500.0)
    assert 'pure nugget' in ' '.join(variogram.bound_warnings(variogram.fit_variogram(flat, 'exponential'),
                                                                flat))


def test_meuse_fit_has_no_bound_warning(meuse):
    experimental = variogram.experimental_variogram(*meuse)
    assert experimental.diagonal == pytest.approx(np.hypot(np.ptp(meuse[0]), np.ptp(meuse[1])))
    assert variogram.bound_warnings(variogram.fit_variogram(experimental, 'spherical'), experimental) == []


def test_fit_without_nugget_and_other_weights(meuse):
    experimental = variogram.experimental_variogram(*meuse)
    model = variogram.fit_variogram(experimental, 'exponential', 'ols', fit_nugget=False)
    assert model.nugget == 0.0 and model.psill > 0
    cressie = variogram.fit_variogram(experimental, 'spherical', 'cressie')
    assert cressie.range > 0 and cressie.psill > 0


def test_bad_inputs():
    x = np.arange(10.0)
    with pytest.raises(InputError, match='constant') as error:
        variogram.fit_variogram(variogram.experimental_variogram(x, x ** 2, np.ones(10)))
    assert error.value.parameter == 'FIELD'
    with pytest.raises(InputError) as error:
        variogram.experimental_variogram(np.zeros(5), np.zeros(5), np.arange(5.0))
    assert error.value.parameter == 'INPUT'
    with pytest.raises(InputError):
        variogram.VariogramModel('cubic', 0.0, 1.0, 1.0)


def test_algorithm_outputs_gstat_model(run_alg, test_data, tmp_path):
    result = run_alg('variogram', {
        'INPUT': str(test_data / 'meuse' / 'meuse.gpkg'), 'FIELD': 'zinc', 'LOG_TRANSFORM': True,
        'VARIOGRAM_MODEL': 'spherical', 'OUTPUT_HTML': str(tmp_path / 'v.html')})
    np.testing.assert_allclose([result['NUGGET'], result['SILL'], result['RANGE']],
                               [GSTAT_NUGGET, GSTAT_PSILL, GSTAT_RANGE], rtol=FIT_RTOL)
    assert result['MODEL'] == 'spherical'
    page = (tmp_path / 'v.html').read_text()
    assert 'data:image/png;base64' in page and 'vgm(' in page


def test_algorithm_auto_reports_candidates(run_alg, test_data, tmp_path):
    result = run_alg('variogram', {
        'INPUT': str(test_data / 'meuse' / 'meuse.gpkg'), 'FIELD': 'zinc', 'LOG_TRANSFORM': True,
        'VARIOGRAM_MODEL': 'auto', 'OUTPUT_HTML': str(tmp_path / 'auto.html')})
    assert result['MODEL'] in variogram.MODELS
    page = (tmp_path / 'auto.html').read_text()
    assert all(name in page for name in variogram.MODELS) and 'LOO RMSE' in page


def test_algorithm_refuses_geographic_layer(run_alg, test_data, tmp_path):
    from osgeo import gdal
    from qgis.core import QgsProcessingException
    path = str(tmp_path / 'meuse_wgs84.gpkg')
    gdal.VectorTranslate(path, str(test_data / 'meuse' / 'meuse.gpkg'), dstSRS='EPSG:4326')
    with pytest.raises(QgsProcessingException, match='INPUT.*projected'):
        run_alg('variogram', {'INPUT': path, 'FIELD': 'zinc', 'OUTPUT_HTML': str(tmp_path / 'x.html')})
