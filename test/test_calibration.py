"""Radiometric calibration: analytic cases per formula, the GRASS i.landsat.toar reference of a
real Landsat 8 scene, radiance <-> reflectance round trips, metadata readers and bad inputs."""
import math
import shutil
from datetime import date

import numpy as np
import pytest
from osgeo import gdal

from factories import make_grid, run_as_in_the_toolbox
from rsgeochem.core.errors import InputError
from rsgeochem.core.imagery import calibration, sensor_metadata, sensors
from rsgeochem.core.raster.blockio import write_raster

ALG = 'radiometriccalibration'
SCENE = 'LC08_L1TP_195025_20130707_20170503_01_T1'
L8_BANDS = ['B2', 'B3', 'B4', 'B5', 'B6', 'B7']
SENSOR = {sensor_id: index for index, sensor_id in enumerate(sensors.SENSOR_IDS)}
REFLECTANCE, RADIANCE = 0, 1


@pytest.fixture(scope='module')
def l8_stack(test_data, tmp_path_factory):
    """The six reflective 30 m bands B2-B7 of the real scene as one (virtual) raster."""
    folder = tmp_path_factory.mktemp('l8')
    files = []
    for band in L8_BANDS:   # copies: QGIS writes .aux.xml statistics beside the files it loads
        files.append(str(shutil.copy(test_data / 'imagery' / f'{SCENE}_{band}.TIF', folder)))
    path = folder / 'l8_B234567.vrt'
    gdal.BuildVRT(str(path), files, separate=True).FlushCache()
    return path


@pytest.fixture(scope='module')
def mtl(test_data):
    return test_data / 'imagery' / f'{SCENE}_MTL.txt'


def read(path):
    """(array (bands, rows, cols), [(description, GDAL type, nodata) per band])."""
    dataset = gdal.Open(str(path))
    bands = [dataset.GetRasterBand(i + 1) for i in range(dataset.RasterCount)]
    info = [(band.GetDescription(), band.DataType, band.GetNoDataValue()) for band in bands]
    return dataset.ReadAsArray().astype(np.float64).reshape(len(bands), dataset.RasterYSize, -1), info


def dn_raster(tmp_path, values, name='dn.tif', nodata=None):
    array = np.asarray(values, dtype=np.float64)
    return write_raster(tmp_path / name, make_grid(array.shape[-1], array.shape[-2]), array, nodata=nodata)


# --- core: formulas -------------------------------------------------------------------------------

def test_earth_sun_distance_matches_usgs_mtl_value(mtl):
    metadata = sensor_metadata.read_landsat_mtl(mtl)
    assert metadata.earth_sun_distance == pytest.approx(1.0166988)
    assert calibration.earth_sun_distance(metadata.date) == pytest.approx(1.0166988, abs=5e-5)
    # perihelion (early January) and aphelion (early July) of the Astronomical Almanac
    assert calibration.earth_sun_distance(date(2021, 1, 2)) == pytest.approx(0.98326, abs=2e-4)
    assert calibration.earth_sun_distance(date(2021, 7, 5)) == pytest.approx(1.01671, abs=2e-4)


def test_reflectance_factor_analytic():
    # sun elevation 30 deg -> cos(theta_z) = 1/2; d = 1; ESUN = 200 pi -> rho = L / 100
    assert calibration.reflectance_factor(200 * math.pi, 30.0, 1.0) == pytest.approx(0.01)
    # sun at the zenith, d = 2 AU, ESUN = 100 pi -> pi * 4 / (100 pi) = 0.04
    assert calibration.reflectance_factor(100 * math.pi, 90.0, 2.0) == pytest.approx(0.04)


def test_generic_linear_coefficients_analytic():
    generic = sensors.load_sensors()[sensors.GENERIC]
    bands = calibration.band_calibrations(generic, ['B1', 'B2'], gains=[0.5, 2.0], offsets=[10.0, -1.0],
                                          esun=[200 * math.pi, 100 * math.pi])
    geometry = calibration.Geometry(sun_elevation=30.0, distance=1.0)
    a, b = calibration.linear_coefficients(bands, calibration.REFLECTANCE, geometry)
    dn = np.ma.MaskedArray(np.full((2, 1, 1), 100.0))
    result = calibration.apply_linear(dn, a, b)
    # B1: L = 0.5*100 + 10 = 60 -> 0.6; B2: L = 199 -> 199 * 2 / 100 = 3.98
    np.testing.assert_allclose(result[:, 0, 0], [0.6, 3.98])
    a, b = calibration.linear_coefficients(bands, calibration.RADIANCE, geometry)
    np.testing.assert_allclose(calibration.apply_linear(dn, a, b)[:, 0, 0], [60.0, 199.0])


def test_aster_unit_conversion_coefficients_of_the_handbook():
    aster = sensors.load_sensors()['aster_l1t']
    bands = calibration.band_calibrations(aster, ['B1', 'B3N', 'B4', 'B9'], aster_gains=['NOR', 'HGH',
                                                                                       'LO2', 'LO1'])
    a, b = calibration.linear_coefficients(bands, calibration.RADIANCE, calibration.Geometry())
    # ASTER User Handbook v2 table 5: L = (DN - 1) * UCC; UCC 1.688 (B1 normal), 0.423 (3N high),
    # 0.290 (B4 low 2), 0.0424 (B9 low 1)
    np.testing.assert_allclose(a * 101 + b, [168.8, 42.3, 29.0, 4.24])
    with pytest.raises(InputError, match='ASTER_GAIN'):
        calibration.band_calibrations(aster, ['B1'], aster_gains=['LO2'])


def test_sentinel2_defaults_are_processing_baseline_04():
    s2 = sensors.load_sensors()['sentinel2_msi_l1c']
    bands = calibration.band_calibrations(s2, ['B2', 'B8A'])
    a, b = calibration.linear_coefficients(bands, calibration.REFLECTANCE, calibration.Geometry())
    np.testing.assert_allclose(a * 3000 + b, [0.2, 0.2])   # (3000 - 1000) / 10000
    with pytest.raises(InputError, match='ESUN'):
        calibration.linear_coefficients(bands, calibration.RADIANCE, calibration.Geometry(60.0, 1.0))


# --- core: metadata readers -----------------------------------------------------------------------

def test_landsat_mtl_reader_on_real_files(mtl, test_data):
    l8 = sensor_metadata.read_landsat_mtl(mtl)
    assert (l8.spacecraft, l8.date, l8.sun_elevation) == ('LANDSAT_8', date(2013, 7, 7), 58.99675180)
    assert l8.bands['B4'] == {'radiance_mult': 9.6653e-03, 'radiance_add': -48.32638,
                              'reflectance_mult': 2.0e-05, 'reflectance_add': -0.1}
    # the original USGS file of this TM scene is padded with NUL bytes
    l5 = sensor_metadata.read_landsat_mtl(test_data / 'imagery' / 'LT52240631988227CUB02_MTL.txt')
    assert (l5.spacecraft, l5.date, l5.sun_elevation) == ('LANDSAT_5', date(1988, 8, 14), 49.75588889)
    assert l5.bands['B7'] == {'radiance_mult': 0.066, 'radiance_add': -0.21555}
    assert l5.earth_sun_distance is None


def write_sentinel2_mtd(folder, baseline='04.00', offsets=True, zenith=None):
    """MTD_MSIL1C.xml with the tag layout of ESA's L1C products (values chosen for the test)."""
    offset_list = ''.join(f'<RADIO_ADD_OFFSET band_id="{i}">-1000</RADIO_ADD_OFFSET>' for i in range(13))
    irradiance = ''.join(f'<SOLAR_IRRADIANCE bandId="{i}" unit="W/m²/µm">{1000 + i}</SOLAR_IRRADIANCE>'
                         for i in range(13))
    text = f"""<?xml version="1.0" encoding="UTF-8"?>
<n1:Level-1C_User_Product xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-1C.xsd">
 <n1:General_Info><Product_Info><PRODUCT_START_TIME>2022-03-21T10:20:31.024Z</PRODUCT_START_TIME>
  <PROCESSING_BASELINE>{baseline}</PROCESSING_BASELINE><PRODUCT_TYPE>S2MSI1C</PRODUCT_TYPE>
  <Datatake><SPACECRAFT_NAME>Sentinel-2B</SPACECRAFT_NAME></Datatake></Product_Info>
  <Product_Image_Characteristics><QUANTIFICATION_VALUE unit="none">10000</QUANTIFICATION_VALUE>
   {'<Radiometric_Offset_List>' + offset_list + '</Radiometric_Offset_List>' if offsets else ''}
   <Reflectance_Conversion><U>0.990</U><Solar_Irradiance_List>{irradiance}</Solar_Irradiance_List>
   </Reflectance_Conversion></Product_Image_Characteristics></n1:General_Info>
</n1:Level-1C_User_Product>"""
    path = folder / 'MTD_MSIL1C.xml'
    path.write_text(text, encoding='utf-8')
    if zenith is not None:
        tile = folder / 'GRANULE' / 'L1C_T21MXS' / 'MTD_TL.xml'
        tile.parent.mkdir(parents=True)
        tile.write_text(f'<n1:Level-1C_Tile_ID xmlns:n1="x"><n1:Geometric_Info><Tile_Angles><Mean_Sun_Angle>'
                        f'<ZENITH_ANGLE unit="deg">{zenith}</ZENITH_ANGLE><AZIMUTH_ANGLE unit="deg">140'
                        f'</AZIMUTH_ANGLE></Mean_Sun_Angle></Tile_Angles></n1:Geometric_Info>'
                        f'</n1:Level-1C_Tile_ID>', encoding='utf-8')
    return path


def write_gf2_xml(folder, sensor='PMS1'):
    """GF-2 scene XML with the <ProductMetaData> tags of CRESDA deliveries."""
    path = folder / f'GF2_{sensor}_E113.5_N23.4_20160820_L1A0001234567-MSS1.xml'
    path.write_text(f"""<?xml version="1.0" encoding="UTF-8"?>
<ProductMetaData><SatelliteID>GF2</SatelliteID><SensorID>{sensor}</SensorID>
<ReceiveTime>2016-08-21 02:10:00</ReceiveTime><StartTime>2016-08-20 14:19:58</StartTime>
<CenterTime>2016-08-20 14:20:00</CenterTime><SolarAzimuth>57.353</SolarAzimuth>
<SolarZenith>26.056</SolarZenith></ProductMetaData>""", encoding='utf-8')
    return path


def test_sentinel2_and_gf2_readers(tmp_path):
    s2 = sensor_metadata.read_sentinel2_mtd(write_sentinel2_mtd(tmp_path, zenith=35.0))
    assert (s2.spacecraft, s2.date, s2.processing_baseline) == ('Sentinel-2B', date(2022, 3, 21), '04.00')
    assert s2.sun_elevation == pytest.approx(55.0)
    assert s2.earth_sun_distance == pytest.approx(1 / math.sqrt(0.99))
    assert s2.bands['id8'] == {'radio_add_offset': -1000.0, 'esun': 1008.0}
    gf2 = sensor_metadata.read_gf2_xml(write_gf2_xml(tmp_path))
    assert (gf2.spacecraft, gf2.instrument, gf2.date) == ('GF2', 'PMS1', date(2016, 8, 20))
    assert gf2.sun_elevation == pytest.approx(63.944)
    assert sensor_metadata.read_metadata(tmp_path / 'MTD_MSIL1C.xml').kind == 'sentinel2_mtd'


# --- algorithm ------------------------------------------------------------------------------------

def test_landsat8_toa_reflectance_matches_grass(qgis_app, l8_stack, mtl, test_data, tmp_path):
    result, loaded = run_as_in_the_toolbox(
        ALG, {'INPUT': str(l8_stack), 'SENSOR': SENSOR['landsat8_oli'], 'METADATA': str(mtl),
              'BAND_LIST': ','.join(L8_BANDS), 'OUTPUT': str(tmp_path / 'toa.tif')}, ['OUTPUT'])
    assert loaded['OUTPUT'].name == 'TOA reflectance (Landsat 8 OLI)'
    assert loaded['OUTPUT'].layer.renderer().type() == 'multibandcolor'
    ours, bands = read(result['OUTPUT'])
    grass, _ = read(test_data / 'imagery' / 'l8_toa_reflectance_B234567.tif')
    assert np.abs(ours - grass).max() <= 1e-4
    assert bands[2] == ('B4 TOA reflectance (unitless)', gdal.GDT_Float32, -9999.0)
    assert result['USED_SUN_ELEVATION'] == pytest.approx(58.9967518)
    assert result['USED_EARTH_SUN_DISTANCE'] == pytest.approx(1.0166988)


def test_radiance_and_reflectance_follow_the_usgs_rescaling(run_alg, l8_stack, mtl, tmp_path):
    common = {'INPUT': str(l8_stack), 'SENSOR': SENSOR['landsat8_oli'], 'METADATA': str(mtl),
              'BAND_LIST': ','.join(L8_BANDS)}
    radiance_output = run_alg(ALG, {**common, 'QUANTITY': RADIANCE, 'OUTPUT': str(tmp_path / 'L.tif')})
    radiance, bands = read(radiance_output['OUTPUT'])
    reflectance, _ = read(run_alg(ALG, {**common, 'OUTPUT': str(tmp_path / 'rho.tif')})['OUTPUT'])
    dn, _ = read(l8_stack)
    # USGS Landsat 8 handbook: L = RADIANCE_MULT * DN + RADIANCE_ADD and rho = (REFLECTANCE_MULT * DN
    # + REFLECTANCE_ADD) / sin(sun elevation); the coefficients of bands B4 and B7 of the MTL file
    sine = math.sin(math.radians(58.99675180))
    for index, (radiance_mult, radiance_add, reflectance_mult) in (
            (2, (9.6653e-03, -48.32638, 2.0e-05)), (5, (4.9578e-04, -2.47890, 2.0e-05))):
        np.testing.assert_allclose(radiance[index], radiance_mult * dn[index] + radiance_add, rtol=1e-6)
        # the implied OLI ESUN turns the radiance offset into REFLECTANCE_ADD (-0.1) within 3e-7
        np.testing.assert_allclose(reflectance[index], (reflectance_mult * dn[index] - 0.1) / sine,
                                   rtol=0, atol=1e-6)
    assert bands[2] == ('B4 At-sensor radiance (W m-2 sr-1 um-1)', gdal.GDT_Float32, -9999.0)


def test_gf2_with_user_gains_and_scene_xml(run_alg, tmp_path):
    dn = np.array([[[100, 200], [300, 0]]] * 4, dtype=float) + np.arange(4)[:, None, None] * 50
    dn[:, 1, 1] = 0
    source = dn_raster(tmp_path, dn)
    gains, offsets, esun = '0.1322,0.155,0.1477,0.1613', '0.1,0,-0.2,0', '1945,1854,1543,1081'
    result = run_alg(ALG, {'INPUT': str(source), 'SENSOR': SENSOR['gf2_pms1'],
                           'METADATA': str(write_gf2_xml(tmp_path)), 'GAINS': gains, 'OFFSETS': offsets,
                           'ESUN': esun, 'OUTPUT': str(tmp_path / 'gf2.tif')})
    assert result['USED_SUN_ELEVATION'] == pytest.approx(90 - 26.056)
    ours, _ = read(result['OUTPUT'])
    # analytic: rho = pi (g DN + o) d^2 / (ESUN cos(26.056 deg)), d on 2016-08-20 (day 233)
    d = 1 - 0.01672 * math.cos(math.radians(0.9856 * (233 - 4)))
    g, o, e = (np.array([float(v) for v in s.split(',')])[:, None, None] for s in (gains, offsets, esun))
    expected = math.pi * (g * dn + o) * d ** 2 / (e * math.cos(math.radians(26.056)))
    np.testing.assert_allclose(ours[:, :1], expected[:, :1], rtol=1e-6)
    assert np.all(ours[:, 1, 1] == -9999.0)   # DN 0 is fill


def test_sentinel2_l1c_with_metadata(run_alg, tmp_path):
    dn = np.full((2, 3, 3), 3000.0)
    source = dn_raster(tmp_path, dn)
    mtd = write_sentinel2_mtd(tmp_path, zenith=30.0)
    common = {'INPUT': str(source), 'SENSOR': SENSOR['sentinel2_msi_l1c'], 'METADATA': str(mtd),
              'BAND_LIST': 'B4,B8'}
    rho, _ = read(run_alg(ALG, {**common, 'OUTPUT': str(tmp_path / 'rho.tif')})['OUTPUT'])
    np.testing.assert_allclose(rho, 0.2, rtol=1e-6)
    radiance, _ = read(run_alg(ALG, {**common, 'QUANTITY': RADIANCE, 'OUTPUT': str(tmp_path / 'L.tif')})
                       ['OUTPUT'])
    # L = rho E0 cos(theta_z) U / pi with E0 of band ids 3 and 7 and U = 0.99
    expected = 0.2 * np.array([1003.0, 1007.0]) * math.cos(math.radians(30.0)) * 0.99 / math.pi
    np.testing.assert_allclose(radiance[:, 0, 0], expected, rtol=1e-6)
    (tmp_path / 'old').mkdir()
    old = write_sentinel2_mtd(tmp_path / 'old', baseline='02.09', offsets=False)
    rho_old, _ = read(run_alg(ALG, {**common, 'METADATA': str(old), 'OUTPUT': str(tmp_path / 'o.tif')})
                      ['OUTPUT'])
    np.testing.assert_allclose(rho_old, 0.3, rtol=1e-6)   # no offset before baseline 04.00


def test_cancel_leaves_no_output(run_alg, l8_stack, mtl, tmp_path):
    from qgis.core import QgsProcessingException, QgsProcessingFeedback
    feedback = QgsProcessingFeedback()
    feedback.cancel()
    output = tmp_path / 'cancelled.tif'
    with pytest.raises(QgsProcessingException, match='Cancelled'):
        run_alg(ALG, {'INPUT': str(l8_stack), 'SENSOR': SENSOR['landsat8_oli'], 'METADATA': str(mtl),
                      'BAND_LIST': ','.join(L8_BANDS), 'OUTPUT': str(output)}, feedback)
    assert not output.exists() and not list(tmp_path.glob('*.partial.tif'))


@pytest.mark.parametrize('parameters, key', [
    ({'BAND_LIST': 'B2,B3,B4'}, 'BAND_LIST'),                        # 3 names for 6 bands
    ({'BAND_LIST': 'B2,B3,B4,B5,B6,B10'}, 'BAND_LIST'),              # not an OLI reflective band
    ({'METADATA': 'L5'}, 'METADATA'),                                # MTL of another sensor
    ({'METADATA': 'GARBAGE'}, 'METADATA'),                           # not an MTL at all
    ({'METADATA': None}, 'METADATA'),                                # Landsat needs its MTL
    ({'DATE': '07/07/2013'}, 'DATE'),
    ({'SENSOR': SENSOR['generic'], 'METADATA': None, 'BAND_LIST': ''}, 'GAINS'),
    ({'SENSOR': SENSOR['gf2_pms1'], 'METADATA': None, 'BAND_LIST': ''}, 'BAND_LIST'),
    ({'SENSOR': SENSOR['generic'], 'METADATA': None, 'GAINS': '1,1,1,1,1,1', 'ESUN': '1,1,1,1,1,1',
      'DATE': '2013-07-07'}, 'SUN_ELEVATION'),
    ({'SENSOR': SENSOR['generic'], 'METADATA': None, 'GAINS': '1,1,1,1,1,1', 'ESUN': '1,1,1,1,1,1',
      'SUN_ELEVATION': 40}, 'DATE'),
    ({'SENSOR': SENSOR['generic'], 'METADATA': None, 'GAINS': '1,1,1,1,1,1', 'SUN_ELEVATION': 40,
      'DATE': '2013-07-07'}, 'ESUN'),
    ({'SENSOR': SENSOR['generic'], 'METADATA': None, 'GAINS': '1,1,x,1,1,1'}, 'GAINS'),
    ({'GAINS': '1,1'}, 'GAINS'),
])
def test_bad_inputs_name_the_parameter(run_alg, l8_stack, mtl, test_data, tmp_path, parameters, key):
    from qgis.core import QgsProcessingException
    garbage = tmp_path / 'garbage_MTL.txt'
    garbage.write_bytes(b'\x89PNG\r\n not a metadata file')
    files = {'L5': str(test_data / 'imagery' / 'LT52240631988227CUB02_MTL.txt'), 'GARBAGE': str(garbage)}
    values = {'INPUT': str(l8_stack), 'SENSOR': SENSOR['landsat8_oli'], 'METADATA': str(mtl),
              'BAND_LIST': ','.join(L8_BANDS), 'OUTPUT': str(tmp_path / 'out.tif'), **parameters}
    values['METADATA'] = files.get(values['METADATA'], values['METADATA'])
    with pytest.raises(QgsProcessingException, match=f'^{key}: '):
        run_alg(ALG, {k: v for k, v in values.items() if v is not None})
    assert not (tmp_path / 'out.tif').exists()


def test_qgis_process_run(qgis_process, l8_stack, mtl, test_data, tmp_path):
    output = tmp_path / 'toa_cli.tif'
    qgis_process('run', f'rsgeochem:{ALG}', '--', f'INPUT={l8_stack}', f'SENSOR={SENSOR["landsat8_oli"]}',
                 f'METADATA={mtl}', f'BAND_LIST={",".join(L8_BANDS)}', f'OUTPUT={output}')
    ours, _ = read(output)
    grass, _ = read(test_data / 'imagery' / 'l8_toa_reflectance_B234567.tif')
    assert np.abs(ours - grass).max() <= 1e-4
