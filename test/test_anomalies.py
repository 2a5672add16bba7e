"""anomalies: block-wise statistics and thresholds against numpy, C-A breakpoints of synthetic
fractal distributions with known breaks, ranked polygons of a hand-built raster, mask, bad inputs,
the Processing algorithm and qgis_process."""
import json
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal, ogr, osr

from factories import check_few_areas_inside, run_as_in_the_toolbox
from paths import CHECKOUT
from rsgeochem.core.anomalies.areas import (
    ValueSource,
    mean_sd_threshold,
    median_mad_threshold,
    percentile_threshold,
    ranked_areas,
    raster_statistics,
    roman,
)
from rsgeochem.core.anomalies.fractal import concentration_area
from rsgeochem.core.errors import InputError
from rsgeochem.core.raster.blockio import Grid, write_raster

PIXEL = 10.0


def utm_grid(width, height):
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32721)
    return Grid(width, height, (500000.0, PIXEL, 0.0, 9800000.0, 0.0, -PIXEL), srs.ExportToWkt())


def raster(tmp_path, name, array, nodata=-9999.0):
    array = np.asarray(array, dtype=np.float64)
    return write_raster(tmp_path / name, utm_grid(array.shape[1], array.shape[0]), array, nodata)


def piecewise_power_law(count, breaks, exponents, start=1.0):
    """Values whose area-concentration relation is exactly A(>= v) = count * (v / start)^-a1 up to
    the first break, then continuing with exponent a2, ... (quantile function of the
    piecewise Pareto law, evaluated at mid-ranks)."""
    fraction = (np.arange(count) + 0.5) / count        # A(>= v) / count of the i-th largest value
    values = np.empty(count)
    knots = [start, *breaks]
    knot_fractions = [1.0]
    for low, high, exponent in zip(knots[:-1], knots[1:], exponents):
        knot_fractions.append(knot_fractions[-1] * (high / low) ** -exponent)
    for i, exponent in enumerate(exponents):
        upper = knot_fractions[i]
        lower = knot_fractions[i + 1] if i + 1 < len(knot_fractions) else 0.0
        chosen = (fraction <= upper) & (fraction > lower)
        values[chosen] = knots[i] * (fraction[chosen] / upper) ** (-1.0 / exponent)
    return values


def shuffled_raster(tmp_path, values, width=250):
    rng = np.random.default_rng(7)
    return raster(tmp_path, 'fractal.tif', rng.permutation(values).reshape(-1, width))


@pytest.mark.parametrize('breaks, exponents', [((10.0,), (0.5, 2.0)),
                                               ((5.0, 40.0), (0.3, 1.2, 3.0))])
def test_concentration_area_recovers_known_breaks(tmp_path, breaks, exponents):
    path = shuffled_raster(tmp_path, piecewise_power_law(62500, breaks, exponents))
    statistics = raster_statistics(ValueSource(path, 1, memory_mb=1), bins=20000)
    result = concentration_area(statistics.log_edges, statistics.log_counts, statistics.pixel_area,
                                len(exponents))
    # tolerance: 4 % in concentration (about one C-A curve step of 0.02 log10 units)
    np.testing.assert_allclose(result.breakpoints, breaks, rtol=0.04)
    np.testing.assert_allclose([-s.slope for s in result.segments], exponents, rtol=0.05)
    assert result.threshold == result.breakpoints[-1]


@pytest.fixture(scope='module')
def known_array():
    rng = np.random.default_rng(11)
    values = rng.gamma(2.0, 1.5, (120, 150))
    values[rng.random(values.shape) < 0.05] = -9999.0   # nodata pixels
    return values


def test_statistics_and_thresholds_match_numpy(tmp_path, known_array):
    path = raster(tmp_path, 'gamma.tif', known_array)
    statistics = raster_statistics(ValueSource(path, 1, memory_mb=1), bins=10000)
    valid = known_array[known_array != -9999.0].astype(np.float32).astype(np.float64)
    median = np.median(valid)
    mad = 1.4826 * np.median(np.abs(valid - median))
    width = (valid.max() - valid.min()) / 10000
    assert statistics.count == valid.size
    np.testing.assert_allclose(mean_sd_threshold(statistics, 2.0), valid.mean() + 2 * valid.std(ddof=1),
                               rtol=1e-10)
    # histogram resolution: median within one bin width w, MAD within 1.4826 x 2 w
    assert abs(median_mad_threshold(statistics, 2.5) - (median + 2.5 * mad)) <= width * (1 + 2.5 * 1.4826 * 2)
    assert abs(statistics.median() - median) <= width
    assert abs(percentile_threshold(statistics, 97.5) - np.percentile(valid, 97.5)) <= width


def test_block_size_does_not_change_statistics(tmp_path, known_array):
    path = raster(tmp_path, 'gamma.tif', known_array)
    small = raster_statistics(ValueSource(path, 1, memory_mb=1))
    large = raster_statistics(ValueSource(path, 1, memory_mb=512))
    np.testing.assert_allclose([small.mean, small.sd], [large.mean, large.sd], rtol=1e-12)
    np.testing.assert_array_equal(small.counts, large.counts)


def hand_built(width=20000):
    """Background 1 with: A = 3x3 block of 10 (score 9 px x 10), B = 2x10 block of 6 (20 x 6),
    C = one pixel of 50, D = two pixels of 8 touching only at a corner (two 4-connected areas),
    E = 5x5 ring of 7 around a background hole (16 px). Wide, so 1 MB blocks hold one row."""
    values = np.ones((40, width))
    values[2:5, 2:5] = 10.0            # A
    values[10:12, 3:13] = 6.0          # B
    values[20, 20] = 50.0              # C
    values[30, 30] = values[31, 31] = 8.0   # D
    values[25:30, 40:45] = 7.0         # E with hole
    values[27, 42] = 1.0
    return values


def test_ranks_areas_and_means_of_hand_built_raster(tmp_path):
    path = raster(tmp_path, 'blobs.tif', hand_built())
    found, _ = ranked_areas(ValueSource(path, 1, memory_mb=1), threshold=5.0)
    pixel_area = PIXEL * PIXEL
    # (pixels, mean, max) in rank order of mean x pixels: E 168, B 120, A 90, C 50, D 8, D 8
    expected = [
        (24, 7.0, 7.0), (20, 6.0, 6.0), (9, 10.0, 10.0), (1, 50.0, 50.0), (1, 8.0, 8.0), (1, 8.0, 8.0)]
    assert [a.label for a in found] == ['I', 'II', 'III', 'IV', 'V', 'VI']
    assert [(a.pixels, a.mean, a.maximum) for a in found] == expected
    for anomaly, (pixels, mean, _) in zip(found, expected):
        assert anomaly.area == pixels * pixel_area
        assert anomaly.score == pytest.approx(mean * pixels * pixel_area)
        assert ogr.CreateGeometryFromWkb(anomaly.wkb).GetArea() == pytest.approx(pixels * pixel_area)
    ring = ogr.CreateGeometryFromWkb(found[0].wkb)
    assert ring.GetGeometryCount() == 2    # exterior + the background hole
    assert found[0].centroid == pytest.approx((500000 + 42.5 * PIXEL, 9800000 - 27.5 * PIXEL))


def test_minimum_area_and_mask_exclusion(tmp_path):
    values = hand_built(width=200)
    path = raster(tmp_path, 'blobs.tif', values)
    kept, _ = ranked_areas(ValueSource(path, 1), threshold=5.0, min_area=150.0)
    assert [a.pixels for a in kept] == [24, 20, 9]
    mask = np.ones(values.shape)
    mask[0:8, 0:8] = 0.0          # excludes block A (a village, say)
    mask[20, 20] = -9999.0        # nodata in the mask excludes too
    mask_path = raster(tmp_path, 'mask.tif', mask)
    source = ValueSource(path, 1, mask_path)
    assert [a.pixels for a in ranked_areas(source, 5.0)[0]] == [24, 20, 1, 1]
    assert raster_statistics(source).count == values.size - 64 - 1


def test_most_areas_are_the_head_of_the_full_ranking_ties_included(tmp_path):
    path = raster(tmp_path, 'blobs.tif', hand_built())
    full, _ = ranked_areas(ValueSource(path, 1, memory_mb=1), threshold=5.0)
    for most in (1, 5, 6):  # 5 cuts between the two D areas of equal score
        kept, above = ranked_areas(ValueSource(path, 1, memory_mb=1), 5.0, 0.0, most)
        assert above == 6
        assert [(a.label, a.pixels, a.score, a.centroid, a.wkb) for a in kept] == \
            [(a.label, a.pixels, a.score, a.centroid, a.wkb) for a in full[:most]]


def test_more_areas_than_a_byte_holds_each_get_their_own_polygon(tmp_path):
    """600 isolated pixels of distinct values above the threshold: more pids than a Byte class raster
    holds, so Polygonize works on a wider type; each area is its own pixel's square, ranked by value."""
    values = np.zeros((40, 60))
    rows, cols = np.mgrid[1:40:2, 1:60:2]
    values[rows, cols] = 10.0 + np.arange(rows.size).reshape(rows.shape) / 1024  # exact in float32
    path = raster(tmp_path, 'dots.tif', values)
    found, above = ranked_areas(ValueSource(path, 1, memory_mb=1), threshold=5.0)
    assert above == len(found) == rows.size
    order = np.argsort(-values[rows, cols], axis=None)
    expected = [(values[r, c], 500000 + (c + 0.5) * PIXEL, 9800000 - (r + 0.5) * PIXEL)
                for r, c in zip(rows.ravel()[order], cols.ravel()[order])]
    assert np.allclose([(a.mean, *a.centroid) for a in found], expected, rtol=1e-12)
    assert all(ogr.CreateGeometryFromWkb(a.wkb).Centroid().GetPoint_2D() == pytest.approx(a.centroid)
               and ogr.CreateGeometryFromWkb(a.wkb).GetArea() == pytest.approx(PIXEL * PIXEL) for a in found)


@pytest.mark.skipif(not Path('/proc/self/fd').is_dir(), reason='lists open files through /proc')
def test_areas_of_another_map_leave_it_closed(tmp_path):
    """The map thresholded (a smoothed scratch file in the algorithm) is closed once its areas are
    found, so that its folder can be removed."""
    values = hand_built()
    threshold_map = raster(tmp_path, 'smoothed.tif', values)
    source = ValueSource(threshold_map, 1, memory_mb=1)  # alive after the call, as in the algorithm
    found, _ = ranked_areas(source, 5.0,
                            content=ValueSource(raster(tmp_path, 'content.tif', values), 1, memory_mb=1))
    assert [a.pixels for a in found] == [24, 20, 9, 1, 1, 1]
    open_files = {str(link.resolve()) for link in Path('/proc/self/fd').iterdir() if link.exists()}
    assert str(Path(threshold_map).resolve()) not in open_files


@pytest.mark.parametrize('array, message', [
    (np.full((5, 6), -9999.0), 'no valid pixels'),
    (np.full((5, 6), 3.0), 'constant'),
])
def test_unusable_rasters_name_input(tmp_path, array, message):
    path = raster(tmp_path, 'bad.tif', array)
    with pytest.raises(InputError, match=message) as error:
        raster_statistics(ValueSource(path, 1, keys=('INPUT', 'BAND', 'MASK')))
    assert error.value.parameter == 'INPUT'


def test_bad_parameters_name_their_key(tmp_path, known_array):
    path = raster(tmp_path, 'gamma.tif', known_array)
    statistics = raster_statistics(ValueSource(path, 1))
    for k in (-0.5, 11.0, float('nan')):
        with pytest.raises(InputError) as error:
            mean_sd_threshold(statistics, k, 'K')
        assert error.value.parameter == 'K'
    with pytest.raises(InputError) as error:
        percentile_threshold(statistics, 100.0, 'PERCENTILE')
    assert error.value.parameter == 'PERCENTILE'
    with pytest.raises(InputError) as error:
        ValueSource(path, 2)
    assert error.value.parameter == 'BAND'
    other = raster(tmp_path, 'other.tif', np.ones((10, 10)))
    with pytest.raises(InputError, match='same size') as error:
        ValueSource(path, 1, other)
    assert error.value.parameter == 'MASK'
    with pytest.raises(InputError) as error:
        concentration_area(statistics.log_edges, statistics.log_counts, 1.0, 4, 'CA_SEGMENTS')
    assert error.value.parameter == 'CA_SEGMENTS'


def test_roman_numerals():
    assert [roman(n) for n in (1, 4, 9, 14, 40, 90, 400, 1994, 3999, 4000)] == [
        'I', 'IV', 'IX', 'XIV', 'XL', 'XC', 'CD', 'MCMXCIV', 'MMMCMXCIX', '4000']


def test_algorithm_percentile_with_mask(qgis_app, tmp_path):
    values = hand_built(width=60)
    path = raster(tmp_path, 'blobs.tif', values)
    mask = np.ones(values.shape)
    mask[0:8, 0:8] = 0.0
    mask_path = raster(tmp_path, 'mask.tif', mask)
    output = str(tmp_path / 'anomalies.gpkg')
    result, loaded = run_as_in_the_toolbox(
        'anomalies', {'INPUT': path, 'BAND': 1, 'METHOD': 2, 'PERCENTILE': 97.0, 'MASK': mask_path,
                      'SMOOTHING': 1, 'MIN_AREA': 150.0, 'OUTPUT': output,
                      'OUTPUT_HTML': str(tmp_path / 'report.html')},
        ['OUTPUT'])
    valid = values[mask == 1]
    assert result['THRESHOLD'] == pytest.approx(np.percentile(valid, 97.0),
                                                abs=(valid.max() - valid.min()) / 10000)
    assert loaded['OUTPUT'].name == f'High-anomaly areas (97th percentile ≥ {result["THRESHOLD"]:.4g})'
    assert result['ANOMALY_COUNT'] == 2 and result['BREAKPOINTS'] == ''
    dataset = ogr.Open(output)
    layer = dataset.GetLayer(0)
    rows = [(f['rank'], f['rank_label'], f['pixels'], f['area'], f['mean'], f['max']) for f in layer]
    assert rows == [(1, 'I', 24, 2400.0, 7.0, 7.0), (2, 'II', 20, 2000.0, 6.0, 6.0)]
    assert layer.GetSpatialRef().GetAuthorityCode(None) == '32721'
    html = (tmp_path / 'report.html').read_text()
    assert 'Concentration-area plot' in html and html.count('<img') == 3
    # the style the toolbox applies once the layer is loaded: outlined, labelled with the rank
    layer = loaded['OUTPUT'].layer
    assert layer.labelsEnabled() and layer.labeling().settings().fieldName == 'rank_label'
    # over the polygon, not around it (QgsPalLayerSettings.OverPoint is another enum on QGIS >= 3.26)
    from qgis.core import QgsPalLayerSettings
    assert layer.labeling().settings().placement == QgsPalLayerSettings.Placement.OverPoint
    assert layer.renderer().symbol().symbolLayer(0).strokeColor().name() == '#e31a1c'


def test_algorithm_rejects_bad_inputs(run_alg, tmp_path):
    from qgis.core import QgsProcessingException
    constant = raster(tmp_path, 'constant.tif', np.full((5, 6), 3.0))
    common = {'OUTPUT': 'TEMPORARY_OUTPUT', 'OUTPUT_HTML': str(tmp_path / 'r.html')}
    with pytest.raises(QgsProcessingException, match='^INPUT: .*constant'):
        run_alg('anomalies', {'INPUT': constant, 'METHOD': 0, **common})
    varied = raster(tmp_path, 'varied.tif', np.arange(30.0).reshape(5, 6))
    with pytest.raises(QgsProcessingException, match='K: 25.0 is not accepted. Range: 0 to 10.$'):
        run_alg('anomalies', {'INPUT': varied, 'METHOD': 0, 'K': 25.0, **common})
    negative = raster(tmp_path, 'negative.tif', -np.arange(1.0, 31.0).reshape(5, 6))
    with pytest.raises(QgsProcessingException, match='^INPUT: .*positive'):
        run_alg('anomalies', {'INPUT': negative, 'METHOD': 3, **common})


def test_qgis_process_concentration_area(qgis_process, tmp_path):
    path = shuffled_raster(tmp_path, piecewise_power_law(62500, (10.0,), (0.5, 2.0)))
    output = tmp_path / 'ca.gpkg'
    result = qgis_process('run', 'rsgeochem:anomalies', '--json', '--', f'INPUT={path}', 'METHOD=3',
                          'SMOOTHING=1', 'MIN_AREA=1', 'MAX_AREAS=0', 'CA_SEGMENTS=2', 'HISTOGRAM_BINS=20000',
                          f'OUTPUT={output}', f'OUTPUT_HTML={tmp_path / "ca.html"}')
    outputs = json.loads(result.stdout)['results']
    assert float(outputs['THRESHOLD']) == pytest.approx(10.0, rel=0.04)
    assert float(outputs['BREAKPOINTS']) == pytest.approx(float(outputs['THRESHOLD']))
    dataset = ogr.Open(str(output))
    layer = dataset.GetLayer(0)
    # pixels >= the threshold: 10^-0.5 of the raster by construction (within the threshold error)
    pixels = sum(f['pixels'] for f in layer)
    expected = 62500 * (float(outputs['THRESHOLD'])) ** -0.5
    assert pixels == pytest.approx(expected, rel=0.03)


def test_focal_mean_matches_a_direct_window_mean(tmp_path):
    """Block-wise focal mean (row halos, one-row blocks) against numpy's mean over every 5 x 5 window;
    pixels whose window crosses the edge, nodata or the mask have no value."""
    from numpy.lib.stride_tricks import sliding_window_view

    from rsgeochem.core.anomalies.smoothing import focal_mean
    rng = np.random.default_rng(3)
    values = rng.gamma(2.0, 1.5, (12, 3000))
    invalid = rng.random(values.shape) < 0.002
    values[invalid] = -9999.0
    mask = np.ones(values.shape)
    mask[5, 100:140] = 0.0
    path, mask_path = raster(tmp_path, 'noisy.tif', values), raster(tmp_path, 'mask.tif', mask)
    smoothed, count = focal_mean(ValueSource(path, 1, mask_path, memory_mb=1), 5, tmp_path / 'mean.tif')
    expected = np.full(values.shape, np.nan)
    windows = sliding_window_view(values, (5, 5))
    complete = ~sliding_window_view(invalid | (mask == 0), (5, 5)).any(axis=(2, 3))
    expected[2:-2, 2:-2] = np.where(complete, windows.mean(axis=(2, 3)), np.nan)
    dataset = gdal.Open(smoothed.path)
    band = dataset.GetRasterBand(1)
    actual = band.ReadAsArray().astype(np.float64)
    actual[actual == band.GetNoDataValue()] = np.nan
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    np.testing.assert_allclose(actual, expected, rtol=1e-6)  # float32 output
    assert count == np.isfinite(expected).sum()


def test_fixed_threshold(run_alg, tmp_path):
    path = raster(tmp_path, 'blobs.tif', hand_built(width=60))
    output = str(tmp_path / 'fixed.gpkg')
    result = run_alg('anomalies', {'INPUT': path, 'METHOD': 4, 'FIXED_THRESHOLD': 6.5, 'SMOOTHING': 1,
                                   'MIN_AREA': 1.0,
                                   'OUTPUT': output, 'OUTPUT_HTML': str(tmp_path / 'fixed.html')})
    assert result['THRESHOLD'] == 6.5 and result['BREAKPOINTS'] == ''
    dataset = ogr.Open(output)
    # A (10), C (50), D (8, two areas) and E (7) are >= 6.5; B (6) is not
    assert sorted(f['pixels'] for f in dataset.GetLayer(0)) == [1, 1, 1, 9, 24]


def test_most_areas_kept_are_the_highest_ranked(run_alg, tmp_path):
    path = raster(tmp_path, 'blobs.tif', hand_built(width=60))
    ranked = {}
    for most in (0, 2):
        output = str(tmp_path / f'most{most}.gpkg')
        result = run_alg('anomalies', {'INPUT': path, 'METHOD': 4, 'FIXED_THRESHOLD': 6.5, 'SMOOTHING': 1,
                                       'MIN_AREA': 1.0, 'MAX_AREAS': most, 'OUTPUT': output,
                                       'OUTPUT_HTML': str(tmp_path / f'most{most}.html')})
        dataset = ogr.Open(output)
        ranked[most] = sorted((f['rank'], f['pixels'], f['score']) for f in dataset.GetLayer(0))
        assert result['ANOMALY_COUNT'] == len(ranked[most])
    assert len(ranked[0]) == 5 and ranked[2] == ranked[0][:2]
    assert 'the highest-ranked of 5' in (tmp_path / 'most2.html').read_text(encoding='utf-8')


@pytest.mark.parametrize('name', ['simulated_re2o3_truth.tif', 'simulated_cu_truth.tif'])
def test_defaults_on_the_sample_data_truths_give_a_few_areas(run_alg, tmp_path, name):
    """Every default on two maps unlike each other: the RE2O3 truth (pixel-scale detail, water as
    nodata; above any threshold it breaks into ~20 areas) and the Cu truth (two broad populations:
    median + 2 MAD lies above every pixel): a few areas of at least the smoothing window, inside."""
    path = str(CHECKOUT / 'resources' / 'sample' / name)
    output = str(tmp_path / 'areas.gpkg')
    result = run_alg('anomalies', {'INPUT': path, 'OUTPUT': output, 'OUTPUT_HTML': str(tmp_path / 'a.html')})
    check_few_areas_inside(output, path, result['ANOMALY_COUNT'])


def test_defaults_on_kriged_sample_data_give_a_few_areas_away_from_the_edge(run_alg, tmp_path):
    """Kriging of the sample RE2O3 data onto the image grid, then anomalies with every default: the
    kriged map spikes at each sample (nugget), which thresholding pixel by pixel outlines as single
    pixels; the defaults give a few areas of at least the 5 x 5 smoothing window, none within two
    pixels of the raster edge."""
    sample = CHECKOUT / 'resources' / 'sample'
    kriged = run_alg('kriging', {'INPUT': str(sample / 'simulated_re2o3_samples.gpkg'), 'FIELD': 're2o3_pct',
                                 'REFERENCE_RASTER': str(sample / 'gf2like_pms1_dn.tif'),
                                 'OUTPUT': str(tmp_path / 'kriged.tif'),
                                 'OUTPUT_HTML': str(tmp_path / 'kriging.html')})['OUTPUT']
    # the samples' variogram still rises at the largest lag: the range sits on its bound, and the
    # report says so
    assert 'sits on its upper bound' in (tmp_path / 'kriging.html').read_text()
    output = str(tmp_path / 'areas.gpkg')
    result = run_alg('anomalies', {'INPUT': kriged, 'OUTPUT': output,
                                   'OUTPUT_HTML': str(tmp_path / 'a.html')})
    check_few_areas_inside(output, kriged, result['ANOMALY_COUNT'])

