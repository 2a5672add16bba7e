"""Spectral indices: published formulas on hand-built rasters, real Sentinel-2 against gdal_calc,
band lookup, custom ratios and bad inputs."""
import subprocess

import numpy as np
import pytest
from osgeo import gdal, osr

from rsgeochem.core.errors import InputError
from rsgeochem.core.imagery import indices as core
from rsgeochem.core.raster import blockio

S2 = 'sentinel2/s2_para_subset_80x64.tif'
SENSOR = {'aster': 0, 'sentinel2': 1, 'landsat8': 2, 'gf2': 3, None: 4}

# Kalinowski & Oliver (2004) ASTER mineral indices, written out by hand from the published list
# (b[k] is ASTER band k): an independent check of resources/indices.json.
ASTER_PUBLISHED = {
    'aster_ferric_iron': lambda b: b[2] / b[1],
    'aster_ferrous_iron': lambda b: b[5] / b[3] + b[1] / b[2],
    'aster_ferric_oxides': lambda b: b[4] / b[3],
    'aster_gossan': lambda b: b[4] / b[2],
    'aster_carbonate_chlorite_epidote': lambda b: (b[7] + b[9]) / b[8],
    'aster_epidote_chlorite_amphibole': lambda b: (b[6] + b[9]) / (b[7] + b[8]),
    'aster_amphibole_mgoh': lambda b: (b[6] + b[9]) / b[8],
    'aster_dolomite': lambda b: (b[6] + b[8]) / b[7],
    'aster_carbonate': lambda b: b[13] / b[14],
    'aster_sericite_muscovite_illite_smectite': lambda b: (b[5] + b[7]) / b[6],
    'aster_alunite_kaolinite_pyrophyllite': lambda b: (b[4] + b[6]) / b[5],
    'aster_phengite': lambda b: b[5] / b[6],
    'aster_kaolinite': lambda b: b[7] / b[5],
    'aster_clay': lambda b: b[5] * b[7] / b[6] ** 2,
    'aster_silica_11_10': lambda b: b[11] / b[10],
    'aster_silica_11_12': lambda b: b[11] / b[12],
    'aster_silica_13_10': lambda b: b[13] / b[10],
    'aster_sio2_13_12': lambda b: b[13] / b[12],
    'aster_siliceous_rocks': lambda b: b[11] * b[11] / (b[10] * b[12]),
    'aster_ndvi': lambda b: (b[3] - b[2]) / (b[3] + b[2]),
}


def utm_grid(width, height):
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32650)
    return blockio.Grid(width, height, (400000.0, 4.0, 0.0, 2800000.0, 0.0, -4.0), srs.ExportToWkt())


def write(path, array, nodata=-9999.0, descriptions=None):
    grid = utm_grid(array.shape[-1], array.shape[-2])
    return blockio.write_raster(path, grid, array, nodata=nodata, descriptions=descriptions)


def random_bands(count, shape=(6, 5), seed=0):
    # float32-representable, as written to the test rasters
    values = np.random.default_rng(seed).uniform(0.05, 0.6, size=(count, *shape))
    return values.astype(np.float32).astype(float)


# ---------------------------------------------------------------- core

def test_table_bands_exist_in_sensor_layouts_and_sources_are_given():
    sensors, indices, references = core.load_table()
    for index in indices.values():
        layout = sensors[index.sensor].bands
        assert set(index.tokens()) <= set(layout), index.id
        assert index.source
        assert any(key in index.source for key in references), index.id


@pytest.mark.parametrize('index_id', sorted(ASTER_PUBLISHED))
def test_aster_indices_match_published_formulas(index_id):
    bands = random_bands(14, seed=3)
    values = {name: np.ma.asarray(bands[i]) for i, name in enumerate(core.load_table()[0]['aster'].bands)}
    index = core.load_table()[1][index_id]
    expected = ASTER_PUBLISHED[index_id]({k: bands[k - 1] for k in range(1, 15)})
    np.testing.assert_allclose(core.evaluate(index, values), expected, rtol=1e-12)


def test_zero_denominator_and_nodata_give_masked_pixels():
    a = np.ma.MaskedArray([[1.0, 2.0, 3.0]], mask=[[False, False, True]])
    b = np.ma.MaskedArray([[0.0, 4.0, 1.0]])
    result = core.normalized_difference(a, -a + 0 * b)  # a + (-a) = 0 -> every denominator zero
    assert result.mask.all()
    ratio = core.evaluate(core.parse_custom_ratios(['r', 'x', 'y'])[0], {'x': a, 'y': b})
    assert ratio.mask.tolist() == [[True, False, True]]
    assert ratio[0, 1] == pytest.approx(0.5)


def test_custom_band_lists_parse_without_eval():
    assert core.parse_band_list('4+6') == ((1, '4'), (1, '6'))
    assert core.parse_band_list(' B8 - B4 ') == ((1, 'B8'), (-1, 'B4'))
    assert core.parse_band_list('5 7') == ((1, '5'), (1, '7'))
    for bad in ('4*6', '__import__("os")', '', '4++6', '(4+6)'):
        with pytest.raises(InputError) as error:
            core.parse_band_list(bad, 'CUSTOM_RATIOS')
        assert 'CUSTOM_RATIOS' in str(error.value)
    with pytest.raises(InputError, match='three cells'):
        core.parse_custom_ratios(['a', '1'], 'CUSTOM_RATIOS')


def test_band_lookup_by_description_position_and_band_order():
    sensors = core.load_table()[0]
    lookup, method = core.band_lookup(sensors['sentinel2'], 3, ['B04', 'b8', 'B8A'])
    assert lookup == {'B4': 1, 'B8': 2, 'B8A': 3} and 'description' in method
    lookup, method = core.band_lookup(sensors['gf2'], 4, ['', '', '', ''])
    assert lookup == {'B1': 1, 'B2': 2, 'B3': 3, 'B4': 4} and 'position' in method
    lookup, _ = core.band_lookup(sensors['aster'], 2, ['', ''], band_order=['B3', 'B2'])
    assert lookup == {'B3N': 1, 'B2': 2}  # alias B3 -> B3N
    with pytest.raises(InputError, match='BAND_ORDER'):
        core.band_lookup(sensors['landsat8'], 6, [''] * 6, band_order=['B2', 'B3'], parameter='BAND_ORDER')


# ---------------------------------------------------------------- algorithm

def read(path):
    dataset = gdal.Open(str(path))
    array = dataset.ReadAsArray().astype(np.float64)
    nodata = dataset.GetRasterBand(1).GetNoDataValue()
    names = [dataset.GetRasterBand(i + 1).GetDescription() for i in range(dataset.RasterCount)]
    return np.ma.masked_equal(array, nodata), names


def test_creation_options_reach_the_output(run_alg, tmp_path):
    """QGIS's "Creation options" (CREATION_OPTIONS, '|'-separated) override the GeoTIFF defaults."""
    source = write(tmp_path / 'in.tif', random_bands(9, (40, 30)))
    for options, compression in (('', 'ZSTD'), ('COMPRESS=DEFLATE|ZLEVEL=9', 'DEFLATE')):
        result = run_alg('spectralindices', {'INPUT': source, 'SENSOR': SENSOR['aster'],
                                             'INDICES': 'aster_ferric_iron', 'CREATION_OPTIONS': options,
                                             'OUTPUT': str(tmp_path / f'{compression}.tif')})
        dataset = gdal.Open(result['OUTPUT'])
        assert dataset.GetMetadata('IMAGE_STRUCTURE')['COMPRESSION'] == compression
        assert dataset.GetRasterBand(1).GetBlockSize() == [256, 256]  # still tiled


def test_sentinel2_real_data_matches_gdal_calc(run_alg, test_data, tmp_path):
    source = test_data / S2
    result = run_alg('spectralindices', {'INPUT': str(source), 'SENSOR': SENSOR['sentinel2'],
                                         'INDICES': 's2_ndvi, s2_clay_hydroxyl, s2_ferrous_iron',
                                         'OUTPUT': str(tmp_path / 'idx.tif')})
    output, names = read(result['OUTPUT'])
    assert names == ['NDVI (B8-B4)/(B8+B4)', 'Clay/hydroxyl B11/B12 (SWIR1/SWIR2)',
                     'Ferrous iron B12/B8+B3/B4']
    # independent reference: GDAL's raster calculator on the same file (B8 = band 8, B4 = 4, B11 = 11, ...)
    expressions = ['(H.astype(float)-D)/(H.astype(float)+D)', 'K.astype(float)/L',
                   'L.astype(float)/H + C.astype(float)/D']
    for band, expression in enumerate(expressions):
        reference = tmp_path / f'calc{band}.tif'
        letters = {letter: number for letter, number in zip('CDHKL', (3, 4, 8, 11, 12))}
        arguments = [f'-{k} {source} --{k}_band={n}' for k, n in letters.items()]
        subprocess.run(f'gdal_calc.py --quiet --type=Float64 {" ".join(arguments)} '
                       f'--outfile={reference} --calc="{expression}"', shell=True, check=True)
        np.testing.assert_allclose(output[band].filled(np.nan), gdal.Open(str(reference)).ReadAsArray(),
                                   rtol=2e-6)
    ndvi = output[0]
    assert ndvi.min() < 0.0 < 0.5 < ndvi.max() <= 1.0  # water and vegetation in the subset


def test_aster_nine_bands_skips_tir_indices_blockwise(run_alg, tmp_path):
    bands = random_bands(9, shape=(300, 120), seed=5)
    bands[7, 0, 0] = 0.0  # zero denominator of (7+9)/8
    bands[:, 1, 1] = -9999.0  # nodata pixel
    source = write(tmp_path / 'aster9.tif', bands)
    result = run_alg('spectralindices', {'INPUT': source, 'SENSOR': SENSOR['aster'],
                                         'OUTPUT': str(tmp_path / 'out.tif'), 'BLOCK_MEMORY_MB': 16})
    output, names = read(result['OUTPUT'])
    assert 'Silica 11/10' not in names and len(names) == 21  # TIR indices skipped, 21 VNIR/SWIR ones
    b = {k: bands[k - 1] for k in range(1, 10)}
    np.testing.assert_allclose(output[names.index('Dolomite (6+8)/7')][2:], ((b[6] + b[8]) / b[7])[2:],
                               rtol=1e-6)
    assert output.mask[names.index('Carbonate/chlorite/epidote (7+9)/8'), 0, 0]
    assert output.mask[:, 1, 1].all()


def test_band_count_too_small_for_preset(run_alg, tmp_path):
    from qgis.core import QgsProcessingException
    source = write(tmp_path / 'one.tif', random_bands(1))
    with pytest.raises(QgsProcessingException, match='INPUT: the raster has 1 band.*too few for any ASTER'):
        run_alg('spectralindices', {'INPUT': source, 'SENSOR': SENSOR['aster'],
                                    'OUTPUT': str(tmp_path / 'o.tif')})
    nine = write(tmp_path / 'nine.tif', random_bands(9))
    with pytest.raises(QgsProcessingException, match='INPUT: .*aster_silica_11_10 needs B11, B10'):
        run_alg('spectralindices', {'INPUT': nine, 'SENSOR': SENSOR['aster'], 'INDICES': 'aster_silica_11_10',
                                    'OUTPUT': str(tmp_path / 'o.tif')})
    with pytest.raises(QgsProcessingException, match='INDICES: unknown index id'):
        run_alg('spectralindices', {'INPUT': nine, 'SENSOR': SENSOR['aster'], 'INDICES': 'gf2_ndvi',
                                    'OUTPUT': str(tmp_path / 'o.tif')})


def test_custom_ratio_with_missing_band_is_refused(run_alg, tmp_path):
    from qgis.core import QgsProcessingException
    source = write(tmp_path / 'four.tif', random_bands(4))
    with pytest.raises(QgsProcessingException, match='CUSTOM_RATIOS: custom ratio "bad" names band.* 15'):
        run_alg('spectralindices', {'INPUT': source, 'SENSOR': SENSOR[None],
                                    'CUSTOM_RATIOS': ['ok', '1+2', '3', 'bad', '15', '2'],
                                    'OUTPUT': str(tmp_path / 'o.tif')})


def test_custom_ratio_with_preset(run_alg, tmp_path):
    bands = random_bands(4, seed=9)
    source = write(tmp_path / 'gf2.tif', bands)
    result = run_alg('spectralindices', {'INPUT': source, 'SENSOR': SENSOR['gf2'], 'INDICES': 'gf2_ndvi',
                                         'CUSTOM_RATIOS': ['nir-green over blue', 'B4-2', '1'],
                                         'OUTPUT': str(tmp_path / 'o.tif')})
    output, names = read(result['OUTPUT'])
    assert names == ['NDVI (B4-B3)/(B4+B3)', 'nir-green over blue']
    np.testing.assert_allclose(output[0], (bands[3] - bands[2]) / (bands[3] + bands[2]), rtol=1e-6)
    np.testing.assert_allclose(output[1], (bands[3] - bands[1]) / bands[0], rtol=1e-6)


def test_nodata_everywhere_is_an_error_and_leaves_no_output(run_alg, tmp_path):
    from qgis.core import QgsProcessingException
    source = write(tmp_path / 'empty.tif', np.full((4, 5, 5), -9999.0))
    with pytest.raises(QgsProcessingException, match='INPUT: every output pixel is nodata'):
        run_alg('spectralindices', {'INPUT': source, 'SENSOR': SENSOR['gf2'],
                                    'OUTPUT': str(tmp_path / 'o.tif')})
    assert not (tmp_path / 'o.tif').exists()


def test_qgis_process_gf2_preset(qgis_process, tmp_path):
    bands = random_bands(4, seed=11)
    source = write(tmp_path / 'gf2.tif', bands)
    out = tmp_path / 'gf2_idx.tif'
    qgis_process('run', 'rsgeochem:spectralindices', '--', f'INPUT={source}', 'SENSOR=3',
                 'INDICES=gf2_iron_oxide,gf2_ndwi', f'OUTPUT={out}')
    output, names = read(out)
    assert names == ['Iron oxide B3/B1 (red/blue)', 'NDWI (B2-B4)/(B2+B4)']
    np.testing.assert_allclose(output[0], bands[2] / bands[0], rtol=1e-6)
    np.testing.assert_allclose(output[1], (bands[1] - bands[3]) / (bands[1] + bands[3]), rtol=1e-6)
