"""Correlation with features: scipy.stats cross-checks, the Benjamini-Hochberg (1995) worked
example, NULL handling, undefined coefficients, and the algorithm's table and report."""
import csv
import json
import math

import numpy as np
import pytest
from osgeo import ogr
from scipy import stats

from factories import make_grid, pixel_centre, run_as_in_the_toolbox, write_points
from rsgeochem.core.errors import InputError
from rsgeochem.core.inversion.correlation import benjamini_hochberg, correlate

# Benjamini & Hochberg (1995, J. R. Statist. Soc. B 57(1), p. 295): 15 p-values of a
# myocardial-infarction study; at q = 0.05 the procedure rejects the 4 smallest.
BH_P = [0.0001, 0.0004, 0.0019, 0.0095, 0.0201, 0.0278, 0.0298, 0.0344, 0.0459, 0.3240, 0.4262,
        0.5719, 0.6528, 0.7590, 1.0000]
# adjusted p = min over j >= i of p_(j)·15/j, worked by hand: e.g. i=6: min(0.0278·15/6 = 0.0695,
# 0.0298·15/7 = 0.063857) = 0.063857
BH_ADJUSTED = [0.0015, 0.003, 0.0095, 0.035625, 0.0603, 0.0638571, 0.0638571, 0.0645, 0.0765, 0.486,
               0.5811818, 0.714875, 0.7532308, 0.8132143, 1.0]


def test_benjamini_hochberg_reproduces_the_1995_example():
    shuffled = np.random.default_rng(0).permutation(15)
    adjusted = benjamini_hochberg(np.array(BH_P)[shuffled])
    np.testing.assert_allclose(adjusted, np.array(BH_ADJUSTED)[shuffled], rtol=1e-6)
    assert (adjusted <= 0.05).sum() == 4
    with_nan = benjamini_hochberg([0.01, np.nan, 0.04])  # NaN is not a test: m = 2
    np.testing.assert_allclose(with_nan, [0.02, np.nan, 0.04])


def adjusted_by_definition(p_values):
    """BH adjusted p of the i-th smallest of m p-values: min over j >= i of p_(j)·m/j, capped at 1
    (Benjamini & Hochberg 1995), written out as the definition reads."""
    m = len(p_values)
    ranked = sorted(range(m), key=lambda index: p_values[index])
    adjusted = [0.0] * m
    for i, index in enumerate(ranked, start=1):
        adjusted[index] = min(1.0, min(p_values[ranked[j - 1]] * m / j for j in range(i, m + 1)))
    return adjusted


@pytest.mark.parametrize('seed', [1, 2])
def test_coefficients_and_p_values_match_scipy(seed):
    rng = np.random.default_rng(seed)
    target = rng.lognormal(size=40)
    features = {'linked': target * 2 + rng.normal(size=40), 'noise': rng.normal(size=40),
                'ties': rng.integers(0, 4, size=40).astype(float)}
    results = correlate(target, features, methods=('spearman', 'pearson'), alpha=0.05)
    assert [(r.method, r.feature) for r in results] == [
        (m, f) for m in ('spearman', 'pearson') for f in features]
    for result in results:
        reference = (stats.spearmanr if result.method == 'spearman' else stats.pearsonr)(
            features[result.feature], target)
        assert result.coefficient == pytest.approx(reference[0], rel=1e-12)
        assert result.p_value == pytest.approx(reference[1], rel=1e-9)
        assert result.n == 40 and result.note == ''
    for method in ('spearman', 'pearson'):
        chosen = [r for r in results if r.method == method]
        expected = np.array(adjusted_by_definition([r.p_value for r in chosen]))
        np.testing.assert_allclose([r.p_adjusted for r in chosen], expected)
        assert [r.significant for r in chosen] == list(expected <= 0.05)
    assert results[0].significant  # 'linked' is strongly related


def test_pairwise_and_listwise_null_handling():
    rng = np.random.default_rng(3)
    target = rng.normal(size=30)
    a, b = target + rng.normal(size=30), rng.normal(size=30)
    a[[1, 2]] = np.nan
    b[[5]] = np.nan
    target[0] = np.nan
    pairwise = correlate(target, {'a': a, 'b': b})
    assert [r.n for r in pairwise] == [27, 28]
    keep = np.isfinite(target) & np.isfinite(a)
    assert pairwise[0].coefficient == pytest.approx(stats.spearmanr(a[keep], target[keep])[0])
    listwise = correlate(target, {'a': a, 'b': b}, missing='listwise')
    assert [r.n for r in listwise] == [26, 26]
    keep = np.isfinite(target) & np.isfinite(a) & np.isfinite(b)
    assert listwise[1].coefficient == pytest.approx(stats.spearmanr(b[keep], target[keep])[0])


def test_undefined_coefficients_are_reported_not_adjusted():
    target = np.arange(10.0)
    few = np.full(10, np.nan)
    few[:2] = [1.0, 2.0]
    results = correlate(target, {'constant': np.ones(10), 'few': few, 'good': target ** 2})
    constant, short, good = results
    assert math.isnan(constant.coefficient) and 'constant' in constant.note
    assert constant.significant is None and math.isnan(constant.p_adjusted)
    assert short.n == 2 and 'at least 3' in short.note
    assert good.coefficient == pytest.approx(1.0) and good.p_adjusted == pytest.approx(good.p_value)


@pytest.mark.parametrize('target, features, key', [
    (np.ones(10), {'a': np.arange(10.0)}, 'TARGET'),                 # constant target
    (np.array([1.0, 2.0, np.nan]), {'a': np.arange(3.0)}, 'TARGET'),  # fewer than 3 samples
    (np.arange(10.0), {}, 'FEATURES'),
])
def test_core_bad_inputs_name_the_parameter(target, features, key):
    with pytest.raises(InputError) as caught:
        correlate(target, features)
    assert caught.value.parameter == key


# --- the Processing algorithm ----------------------------------------------------------------

def sample_layer(path, rng, n=25):
    """Points with target 'cu' (NULL once), 'b1' related to it, 'b2' noise, 'flat' constant and
    a text field."""
    grid = make_grid(10, 10)
    cu = rng.lognormal(size=n)
    values = {'cu': [float(v) for v in cu], 'b1': [float(v) for v in cu + rng.normal(0, .3, n)],
              'b2': [float(v) for v in rng.normal(size=n)], 'flat': [1.0] * n, 'name': ['s'] * n}
    values['cu'][0] = None
    write_points(path, [pixel_centre(grid, i % 10, i // 10) for i in range(n)], values)
    return values


def test_algorithm_table_and_report(qgis_app, tmp_path):
    from qgis.core import NULL, QgsVectorLayer
    values = sample_layer(tmp_path / 's.gpkg', np.random.default_rng(5))
    html = tmp_path / 'report.html'
    result, loaded = run_as_in_the_toolbox(
        'correlation', {'INPUT': str(tmp_path / 's.gpkg'), 'TARGET': 'cu', 'METHOD': 2,
                        'OUTPUT': str(tmp_path / 'table.gpkg'), 'OUTPUT_HTML': str(html)}, ['OUTPUT'])
    assert loaded['OUTPUT'].name == 'Correlation with cu'
    written = ogr.Open(result['OUTPUT'])  # complete as soon as processing.run returns
    assert written.GetLayer(0).GetFeatureCount() == 6  # 3 features x 2 methods
    written = None
    table = QgsVectorLayer(result['OUTPUT'], 'table', 'ogr')
    assert table.isValid() and not table.isSpatial()
    rows = {(f['feature'], f['method']): f for f in table.getFeatures()}
    # empty FEATURES: every numeric field except the target (and not the text field)
    assert sorted({feature for feature, _ in rows}) == ['b1', 'b2', 'flat']
    cu = np.array([math.nan, *values['cu'][1:]])
    for name in ('b1', 'b2'):
        spearman = stats.spearmanr(np.array(values[name])[1:], cu[1:])
        assert rows[(name, 'spearman')]['coefficient'] == pytest.approx(spearman[0], rel=1e-9)
        assert rows[(name, 'spearman')]['p_value'] == pytest.approx(spearman[1], rel=1e-6)
        assert rows[(name, 'pearson')]['n'] == 24
    assert rows[('b1', 'spearman')]['significant'] == 1
    flat = rows[('flat', 'pearson')]
    assert flat['coefficient'] == NULL and flat['significant'] == NULL
    assert 'constant' in flat['note']
    page = html.read_text()
    assert '<img' in page and 'Benjamini-Hochberg' in page and 'b1' in page


@pytest.mark.parametrize('change, key', [
    ({'TARGET': 'name'}, 'TARGET'),
    ({'FEATURES': ['b1', 'name']}, 'FEATURES'),
    ({'TARGET': 'flat'}, 'TARGET'),
])
def test_algorithm_bad_inputs_name_the_parameter(run_alg, tmp_path, change, key):
    from qgis.core import QgsProcessingException
    sample_layer(tmp_path / 's.gpkg', np.random.default_rng(6))
    parameters = {'INPUT': str(tmp_path / 's.gpkg'), 'TARGET': 'cu', 'OUTPUT': 'memory:',
                  'OUTPUT_HTML': str(tmp_path / 'r.html'), **change}
    with pytest.raises(QgsProcessingException, match=f'^{key}: '):
        run_alg('correlation', parameters)


def test_cancel_writes_nothing(run_alg, tmp_path):
    from qgis.core import QgsProcessingException, QgsProcessingFeedback
    sample_layer(tmp_path / 's.gpkg', np.random.default_rng(8))
    feedback = QgsProcessingFeedback()
    feedback.cancel()
    with pytest.raises(QgsProcessingException, match='Cancelled'):
        run_alg('correlation', {'INPUT': str(tmp_path / 's.gpkg'), 'TARGET': 'cu',
                                'OUTPUT': str(tmp_path / 't.gpkg'), 'OUTPUT_HTML': str(tmp_path / 'r.html')},
                feedback)
    assert not (tmp_path / 't.gpkg').exists() and not (tmp_path / 'r.html').exists()


def test_too_few_samples_in_a_table_without_geometry(run_alg, tmp_path):
    from qgis.core import QgsFeature, QgsProcessingException, QgsVectorLayer
    table = QgsVectorLayer('None?field=cu:double&field=b1:double', 'two', 'memory')
    for cu, b1 in ((1.0, 2.0), (2.0, 5.0)):
        feature = QgsFeature(table.fields())
        feature.setAttributes([cu, b1])
        table.dataProvider().addFeature(feature)
    with pytest.raises(QgsProcessingException, match='^TARGET: only 2 samples'):
        run_alg('correlation', {'INPUT': table, 'TARGET': 'cu', 'OUTPUT': 'memory:',
                                'OUTPUT_HTML': str(tmp_path / 'r.html')})


def test_qgis_process_runs_correlation(qgis_process, qgis_app, tmp_path):
    values = sample_layer(tmp_path / 's.gpkg', np.random.default_rng(7))
    html = tmp_path / 'r.html'
    run = qgis_process('run', 'rsgeochem:correlation', '--json', '--', f'INPUT={tmp_path / "s.gpkg"}',
                       'TARGET=cu', 'FEATURES=b1', 'FEATURES=b2', 'METHOD=1',
                       f'OUTPUT={tmp_path / "t.csv"}', f'OUTPUT_HTML={html}')
    outputs = json.loads(run.stdout[run.stdout.index('{'):])['results']
    assert outputs['OUTPUT_HTML'] == str(html) and html.exists()
    with open(tmp_path / 't.csv', newline='') as stream:
        rows = list(csv.DictReader(stream))
    assert [(row['feature'], row['method'], row['n']) for row in rows] == [('b1', 'pearson', '24'),
                                                                          ('b2', 'pearson', '24')]
    for row in rows:
        expected = stats.pearsonr(values[row['feature']][1:], values['cu'][1:])[0]
        assert float(row['coefficient']) == pytest.approx(expected, rel=1e-9)
