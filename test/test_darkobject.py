"""Dark-object subtraction: analytic DOS1/COST cases, block-wise histogram, GRASS DOS1 formula
check and the 16-bit subset where GRASS picked dark DN 1, nodata and bad inputs."""
import csv
import math
import shutil

import numpy as np
import pytest
from osgeo import gdal, ogr

from factories import make_grid, run_as_in_the_toolbox
from rsgeochem.core.imagery import darkobject
from rsgeochem.core.raster.blockio import write_raster

ALG = 'darkobjectsubtraction'
SUN_ELEVATION = 58.99675180      # MTL of the Landsat 8 scene
GRASS_BANDS = ['B2', 'B3', 'B4', 'B5', 'B6', 'B7']


@pytest.fixture(scope='module')
def grass_toa(test_data, tmp_path_factory):
    """A copy: QGIS writes .aux.xml statistics beside the rasters it loads."""
    folder = tmp_path_factory.mktemp('grass')
    return shutil.copy(test_data / 'imagery' / 'l8_toa_reflectance_B234567.tif', folder)


@pytest.fixture(scope='module')
def univar(test_data):
    """r.univar of GRASS's TOA and DOS1 maps: {'l8_toa.4': {'min': .., 'max': .., 'mean': ..}, ...}."""
    stats = {}
    for line in (test_data / 'imagery' / 'l8_reflectance_univar.txt').read_text().splitlines():
        name, *pairs = line.split()
        stats[name] = {key: float(value) for key, value in (pair.split('=') for pair in pairs)}
    return stats


def read(path):
    dataset = gdal.Open(str(path))
    return np.ma.masked_equal(dataset.ReadAsArray().astype(np.float64), -9999.0)


def histogram_of(array, blocks=1):
    histogram = darkobject.DarkObjectHistogram(array.shape[0])
    for part in np.array_split(np.ma.asarray(array), blocks, axis=1):
        histogram.add(part)
    return histogram


def test_dos1_and_cost_analytic():
    # 2000 dark pixels at 0.05 and brighter ones: dark value 0.05 with the 1000-pixel rule
    values = np.concatenate([np.full(2000, 0.05), np.linspace(0.06, 0.5, 8000)])
    toa = np.ma.asarray(values.reshape(1, 100, 100))
    dark = darkobject.dark_objects(histogram_of(toa), 1000, 100.0)[0]
    assert dark.count == 1000 and dark.value == pytest.approx(0.05, abs=darkobject.BIN_WIDTH)
    # DOS1: path = 0.05 - 0.01 = 0.04; 0.30 -> 0.26; the dark pixels -> 0.01
    assert darkobject.path_reflectance(0.05, 1.0) == pytest.approx(0.04)
    dos1 = darkobject.subtract(np.ma.asarray([[[0.30, 0.05]]]), [0.04], 1.0)
    np.testing.assert_allclose(dos1, [[[0.26, 0.01]]])
    # COST, sun elevation 30 deg: Tz = cos 60 = 0.5, path = 0.05 - 0.005 = 0.045; 0.30 -> 0.51
    tz = darkobject.transmittance(darkobject.COST, 30.0)
    assert tz == pytest.approx(0.5)
    path = darkobject.path_reflectance(0.05, tz)
    assert path == pytest.approx(0.045)
    np.testing.assert_allclose(darkobject.subtract(np.ma.asarray([[[0.30, 0.05, 0.01]]]), [path], tz),
                               [[[0.51, 0.01, 0.0]]])      # negative results clipped at 0


def test_blockwise_histogram_equals_one_pass_and_order_statistic():
    rng = np.random.default_rng(5)
    values = rng.gamma(4.0, 0.03, size=(2, 90, 70))
    mask = rng.random(values.shape) < 0.1
    array = np.ma.MaskedArray(values, mask)
    whole, blocked = histogram_of(array), histogram_of(array, blocks=7)
    np.testing.assert_array_equal(whole.counts, blocked.counts)
    objects = darkobject.dark_objects(blocked, pixel_count=25, percentile=100.0)
    for band, obj in enumerate(objects):
        kth = np.sort(array[band].compressed())[24]          # the 25th darkest valid pixel
        assert obj.valid == array[band].count() and obj.count == 25
        assert obj.value <= kth < obj.value + darkobject.BIN_WIDTH


def test_rank_is_the_smaller_of_count_and_percentile():
    array = np.ma.asarray(np.linspace(0.0, 1.0, 1681).reshape(1, 41, 41))
    assert darkobject.dark_objects(histogram_of(array), 1000, 0.01)[0].count == 1      # 0.01 % of 1681
    assert darkobject.dark_objects(histogram_of(array), 1000, 10.0)[0].count == 169
    assert darkobject.dark_objects(histogram_of(array), 10, 10.0)[0].count == 10


def test_dos1_formula_reproduces_grass_with_its_dark_dn(grass_toa, univar):
    """GRASS i.landsat.toar method=dos1 on this subset used dark DN 1; our formula with that dark
    value (TOA reflectance of DN 1 from the MTL) gives GRASS's DOS1 statistics."""
    toa = read(grass_toa)
    dark_dn1 = (2.0e-5 * 1 - 0.1) / math.sin(math.radians(SUN_ELEVATION))   # REFLECTANCE_MULT/ADD
    for band in ('4', '5'):
        index = GRASS_BANDS.index(f'B{band}')
        dos1 = darkobject.subtract(toa[index:index + 1], [darkobject.path_reflectance(dark_dn1, 1.0)], 1.0)
        reference = univar[f'l8_dos1.{band}']
        assert dos1.min() == pytest.approx(reference['min'], abs=1e-6)
        assert dos1.max() == pytest.approx(reference['max'], abs=1e-6)
        assert dos1.mean() == pytest.approx(reference['mean'], abs=1e-6)


def test_sensible_dark_objects_on_the_16bit_subset(run_alg, grass_toa, univar, tmp_path):
    result = run_alg(ALG, {'INPUT': str(grass_toa), 'OUTPUT': str(tmp_path / 'dos1.tif'),
                           'OUTPUT_TABLE': str(tmp_path / 'dark.csv'),
                           'OUTPUT_HTML': str(tmp_path / 'dark.html')})
    dark = [float(v) for v in result['DARK_VALUES'].split(',')]
    path = [float(v) for v in result['PATH_REFLECTANCE'].split(',')]
    dos1 = read(result['OUTPUT'])
    for band in ('4', '5'):
        index = GRASS_BANDS.index(f'B{band}')
        toa = univar[f'l8_toa.{band}']
        # 1681 pixels: k = ceil(0.01 % of them) = 1, the darkest pixel, 1 % reflective after DOS1
        assert dark[index] == pytest.approx(toa['min'], abs=2e-5)
        assert path[index] == pytest.approx(dark[index] - 0.01, abs=1e-6)
        assert dos1[index].min() == pytest.approx(0.01, abs=2e-5)
        assert dos1[index].max() == pytest.approx(toa['max'] - toa['min'] + 0.01, abs=2e-5)
        # GRASS's DOS1 (dark DN 1) raised band 4 by 0.127 instead of removing haze
        assert dos1[index].mean() < toa['mean'] < univar[f'l8_dos1.{band}']['mean']
    with open(tmp_path / 'dark.csv', newline='') as handle:
        rows = list(csv.DictReader(handle))
    assert [row['name'] for row in rows] == [f'l8_toa.{band}' for band in range(2, 8)]
    assert (int(rows[2]['valid_pixels']), int(rows[2]['dark_rank'])) == (1681, 1)
    assert float(rows[2]['path_reflectance']) == pytest.approx(path[2])
    assert 'Dark object subtraction (DOS1)' in (tmp_path / 'dark.html').read_text()


def test_cost_reads_sun_elevation_from_metadata_and_keeps_nodata(run_alg, test_data, tmp_path):
    rng = np.random.default_rng(9)
    toa = rng.uniform(0.02, 0.4, size=(2, 40, 30))
    toa[:, :3, :3] = -9999.0
    source = write_raster(tmp_path / 'toa.tif', make_grid(30, 40), toa, nodata=-9999.0)
    mtl = test_data / 'imagery' / 'LC08_L1TP_195025_20130707_20170503_01_T1_MTL.txt'
    common = {'INPUT': str(source), 'METHOD': 1, 'PIXEL_COUNT': 5, 'PERCENTILE': 100.0}
    by_metadata = run_alg(ALG, {**common, 'METADATA': str(mtl), 'OUTPUT': str(tmp_path / 'a.tif')})
    by_value = run_alg(ALG, {**common, 'SUN_ELEVATION': SUN_ELEVATION, 'OUTPUT': str(tmp_path / 'b.tif')})
    a, b = read(by_metadata['OUTPUT']), read(by_value['OUTPUT'])
    np.testing.assert_allclose(a, b)
    assert a.mask[:, :3, :3].all() and a.mask.sum() == 2 * 9
    tz = math.cos(math.radians(90 - SUN_ELEVATION))
    valid = read(source)
    for band in range(2):
        kth = np.sort(valid[band].compressed())[4]
        expected = np.maximum((valid[band] - (kth - 0.01 * tz)) / tz, 0)
        np.testing.assert_allclose(a[band], expected, atol=2e-5 / tz)


def test_output_of_radiometriccalibration_names_and_table(qgis_app, tmp_path):
    """Band descriptions "B4 TOA reflectance (unitless)" become "B4 DOS1 surface reflectance"; the
    GeoPackage table is complete as soon as processing.run returns (read with OGR)."""
    toa = np.stack([np.linspace(0.03, 0.3, 400).reshape(20, 20), np.linspace(0.05, 0.5, 400).reshape(20, 20)])
    source = write_raster(tmp_path / 'scene_toa.tif', make_grid(20, 20), toa, nodata=-9999.0,
                          descriptions=['B4 TOA reflectance (unitless)', 'B5 TOA reflectance (unitless)'])
    result, loaded = run_as_in_the_toolbox(
        ALG, {'INPUT': source, 'PIXEL_COUNT': 1, 'OUTPUT': str(tmp_path / 'sr.tif'),
              'OUTPUT_TABLE': str(tmp_path / 'dark.gpkg')}, ['OUTPUT', 'OUTPUT_TABLE'])
    assert loaded['OUTPUT'].name == 'Surface reflectance (DOS1)'
    assert loaded['OUTPUT_TABLE'].name == 'Dark objects (DOS1)'
    dataset = gdal.Open(result['OUTPUT'])
    assert [dataset.GetRasterBand(i).GetDescription() for i in (1, 2)] == [
        'B4 DOS1 surface reflectance', 'B5 DOS1 surface reflectance']
    table = ogr.Open(str(tmp_path / 'dark.gpkg'))
    layer = table.GetLayer(0)
    assert layer.GetFeatureCount() == 2
    # the darkest pixel of each band (k = 1), 1 % reflective after DOS1
    assert [(f['name'], f['dark_rank']) for f in layer] == [('B4', 1), ('B5', 1)]
    np.testing.assert_allclose([f['dark_value'] for f in layer], [0.03, 0.05], atol=darkobject.BIN_WIDTH)


@pytest.mark.parametrize('kind, parameters, key', [
    ('nodata', {}, 'INPUT'),
    ('dn', {}, 'INPUT'),
    ('toa', {'METHOD': 1}, 'SUN_ELEVATION'),
])
def test_bad_inputs_name_the_parameter(run_alg, tmp_path, kind, parameters, key):
    from qgis.core import QgsProcessingException
    values = {'nodata': np.full((1, 5, 5), -9999.0), 'dn': np.full((1, 5, 5), 8000.0),
              'toa': np.full((1, 5, 5), 0.1)}[kind]
    source = write_raster(tmp_path / 'in.tif', make_grid(5, 5), values, nodata=-9999.0)
    with pytest.raises(QgsProcessingException, match=f'^{key}: '):
        run_alg(ALG, {'INPUT': str(source), 'OUTPUT': str(tmp_path / 'out.tif'), **parameters})
    assert not (tmp_path / 'out.tif').exists()
