"""Radiometric calibration: DN -> at-sensor radiance L (W m-2 sr-1 um-1) -> TOA reflectance.

    L = gain * DN + offset
    rho = pi * L * d^2 / (ESUN * cos(theta_z))      Chander, Markham & Helder (2009), RSE 113, eq. 1-3

with d the Earth-Sun distance (AU), ESUN the band's mean exo-atmospheric solar irradiance
(W m-2 um-1) and theta_z the sun zenith angle (90 deg - sun elevation). Sentinel-2 L1C DN are
already TOA reflectance: rho = (DN + RADIO_ADD_OFFSET) / QUANTIFICATION_VALUE.

Every band is reduced to one linear map `out = a * DN + b` for the requested quantity, so the
per-block work is one multiply-add.
"""
import math
from dataclasses import dataclass
from datetime import date

import numpy as np
from osgeo import gdal, gdal_array

from ..errors import InputError
from ..raster.blockio import DEFAULT_MEMORY_MB, DEFAULT_NODATA, RasterWriter, raster_info, read_blocks
from .sensors import GENERIC

RADIANCE, REFLECTANCE = 'radiance', 'reflectance'
# output band descriptions are "<sensor band> <label>", e.g. "B4 TOA reflectance (unitless)"
QUANTITY_LABELS = {REFLECTANCE: 'TOA reflectance (unitless)',
                   RADIANCE: 'At-sensor radiance (W m-2 sr-1 um-1)'}
GAINS, OFFSETS, ESUN, ASTER_GAIN = 'GAINS', 'OFFSETS', 'ESUN', 'ASTER_GAIN'
SUN_ELEVATION, DATE, METADATA = 'SUN_ELEVATION', 'DATE', 'METADATA'
ASTER_SETTINGS = ('HGH', 'NOR', 'LO1', 'LO2')


def earth_sun_distance(when):
    """Earth-Sun distance (AU) on a date from a first-order Kepler orbit: eccentricity 0.01672,
    perihelion on day 4, mean motion 0.9856 deg/day. Within 2e-5 AU of the USGS MTL value for
    2013-07-07 (see test_calibration)."""
    day = when.timetuple().tm_yday
    return 1.0 - 0.01672 * math.cos(math.radians(0.9856 * (day - 4)))


def reflectance_factor(esun, sun_elevation, distance):
    """pi d^2 / (ESUN cos theta_z): TOA reflectance per unit radiance (Chander et al. 2009, eq. 3)."""
    return math.pi * distance ** 2 / (esun * math.cos(math.radians(90.0 - sun_elevation)))


@dataclass(frozen=True)
class BandCalibration:
    """`gain * DN + offset` gives radiance (kind RADIANCE) or TOA reflectance (kind REFLECTANCE)."""
    name: str
    label: str
    kind: str
    gain: float
    offset: float
    esun: float = None   # W m-2 um-1


@dataclass(frozen=True)
class Geometry:
    sun_elevation: float = None   # degrees
    distance: float = None        # AU
    date: date = None


def check_metadata_matches(sensor, metadata):
    """InputError naming METADATA when the file belongs to another satellite or instrument."""
    instrument_ok = not sensor.instrument or metadata.instrument.upper() == sensor.instrument
    if metadata.spacecraft not in sensor.spacecraft or not instrument_ok:
        raise InputError(f'"{metadata.path}" is metadata of {metadata.spacecraft} {metadata.instrument}, '
                         f'not of {sensor.name}; choose the matching SENSOR or metadata file.', METADATA)


def resolve_geometry(metadata=None, sun_elevation=None, when=None):
    """Sun elevation and Earth-Sun distance: user values first, then the metadata file."""
    if sun_elevation is None and metadata is not None:
        sun_elevation = metadata.sun_elevation
    if sun_elevation is not None and not 0.0 < sun_elevation <= 90.0:
        raise InputError(f'sun elevation {sun_elevation:g} deg is outside 0..90; the sun must be '
                         'above the horizon.', SUN_ELEVATION)
    distance = None
    if when is None and metadata is not None:
        distance = metadata.earth_sun_distance
        when = metadata.date
    if distance is None and when is not None:
        distance = earth_sun_distance(when)
    return Geometry(sun_elevation, distance, when)


def check_count(values, count, parameter, allow_one=False):
    if values and len(values) != count and not (allow_one and len(values) == 1):
        raise InputError(f'{len(values)} values for {count} bands; give one value per raster band, '
                         'in raster order.', parameter)


def missing_gains_error(sensor):
    if sensor.id == GENERIC:
        return InputError('the Generic sensor needs one radiance gain per band (W m-2 sr-1 um-1 per DN), '
                          'comma-separated, plus OFFSETS and ESUN for reflectance.', GAINS)
    if sensor.metadata == 'landsat_mtl':
        return InputError(f'{sensor.name} gains and offsets differ per scene: give the scene\'s MTL.txt '
                          'file (or GAINS and OFFSETS).', METADATA)
    return InputError(f'{sensor.name} gains are not tabulated in this plugin ({sensor.notes}); give one '
                      'gain per band for the acquisition year, and OFFSETS and ESUN.', GAINS)


def table_calibration(sensor, band, metadata, aster_setting):
    """(kind, gain, offset, esun) of a band from its metadata file or the sensor table, or None."""
    if sensor.metadata == 'landsat_mtl' and metadata is not None:
        values = metadata.bands.get(band.name)
        if values is None or 'radiance_mult' not in values:
            raise InputError(f'"{metadata.path}" has no RADIANCE_MULT_BAND_{band.name[1:]}; check '
                             'BAND_LIST or give GAINS and OFFSETS.', METADATA)
        esun = band.esun
        if 'reflectance_mult' in values:
            # OLI publishes no ESUN: the MTL's radiance/reflectance gains imply it (as GRASS
            # i.landsat.toar does), so pi L d^2 / (ESUN cos) equals the USGS reflectance rescaling.
            distance = resolve_geometry(metadata).distance
            if distance is None:
                raise InputError(f'"{metadata.path}" has neither EARTH_SUN_DISTANCE nor DATE_ACQUIRED.',
                                 METADATA)
            esun = math.pi * distance ** 2 * values['radiance_mult'] / values['reflectance_mult']
        return RADIANCE, values['radiance_mult'], values['radiance_add'], esun
    if sensor.quantification_value is not None:
        quantification, offset, esun = sensor.quantification_value, sensor.radio_add_offset, None
        if metadata is not None:
            values = metadata.bands.get(f'id{band.band_id}', {})
            quantification = metadata.quantification_value
            offset, esun = values.get('radio_add_offset', 0.0), values.get('esun')
        return REFLECTANCE, 1.0 / quantification, offset / quantification, esun
    if band.ucc is not None:
        gain = band.ucc[aster_setting]
        if gain is None:
            raise InputError(f'gain setting {aster_setting} does not exist for ASTER band {band.name}; '
                             'use HGH, NOR or LO1 for VNIR bands.', ASTER_GAIN)
        return RADIANCE, gain, -sensor.dn_offset * gain, band.esun
    return None


def band_calibrations(sensor, names, metadata=None, gains=(), offsets=(), esun=(), aster_gains=()):
    """BandCalibration of each raster band: user GAINS/OFFSETS/ESUN override metadata and tables."""
    count = len(names)
    check_count(gains, count, GAINS)
    check_count(offsets, count, OFFSETS)
    check_count(esun, count, ESUN)
    check_count(aster_gains, count, ASTER_GAIN, allow_one=True)
    if offsets and not gains:
        raise InputError('OFFSETS were given without GAINS; give both (or neither).', GAINS)
    unknown = [g for g in aster_gains if g not in ASTER_SETTINGS]
    if unknown:
        raise InputError(f'{", ".join(unknown)}: gain settings are {", ".join(ASTER_SETTINGS)}.', ASTER_GAIN)
    if metadata is not None:
        check_metadata_matches(sensor, metadata)
    calibrations = []
    for index, name in enumerate(names):
        band = sensor.band(name) if sensor.id != GENERIC else None
        label = band.label if band is not None else ''
        if gains:
            kind, gain, offset = RADIANCE, gains[index], offsets[index] if offsets else 0.0
            band_esun = band.esun if band is not None else None
        else:
            setting = aster_gains[index if len(aster_gains) > 1 else 0] if aster_gains else 'NOR'
            found = table_calibration(sensor, band, metadata, setting) if band is not None else None
            if found is None:
                raise missing_gains_error(sensor)
            kind, gain, offset, band_esun = found
        if esun:
            band_esun = esun[index]
        if band_esun is not None and not band_esun > 0:
            raise InputError(f'ESUN of band {name} is {band_esun:g}; it must be positive (W m-2 um-1).', ESUN)
        calibrations.append(BandCalibration(name, label, kind, float(gain), float(offset), band_esun))
    return calibrations


def linear_coefficients(calibrations, quantity, geometry):
    """Arrays (a, b) with `quantity = a * DN + b` per band; InputError names what is missing."""
    a, b = [], []
    for band in calibrations:
        factor = 1.0
        if band.kind != quantity:
            if band.esun is None:
                raise InputError(f'band {band.name} has no solar irradiance ESUN (thermal band, or not '
                                 'tabulated for this sensor); give one ESUN per band (W m-2 um-1) or '
                                 'choose radiance output.', ESUN)
            if geometry.sun_elevation is None:
                raise InputError('no sun elevation: give it in degrees, or a METADATA file that has '
                                 'one.', SUN_ELEVATION)
            if geometry.distance is None:
                raise InputError('no acquisition date for the Earth-Sun distance: give DATE as '
                                 'YYYY-MM-DD, or a METADATA file that has one.', DATE)
            factor = reflectance_factor(band.esun, geometry.sun_elevation, geometry.distance)
            if quantity == RADIANCE:
                factor = 1.0 / factor
        a.append(band.gain * factor)
        b.append(band.offset * factor)
    return np.array(a), np.array(b)


def exact_read_type(info):
    """The smallest float type that holds every value of the raster's band 1 data type exactly
    (float32 for 8- and 16-bit integers and float32, float64 otherwise): blocks read in it cost half
    the memory and conversion of float64, and arithmetic with float64 coefficients still runs in
    float64, so results are those of a float64 read."""
    code = gdal_array.GDALTypeCodeToNumericTypeCode(gdal.GetDataTypeByName(info.data_type))
    return np.result_type(code or np.float64, np.float32)


def apply_linear(dn, a, b):
    """a * DN + b per band of a (bands, rows, cols) masked block."""
    result = dn * a[:, None, None]
    result += b[:, None, None]  # in place: one block-sized array, not two
    return result


# TOA reflectance outside this range is not physical (bright snow and cloud stay below ~1.2; dark
# water with a slightly high offset dips just below 0): values beyond it mean wrong coefficients
PLAUSIBLE_REFLECTANCE = (-0.1, 1.5)


def implausible_reflectances(values):
    """Number of unmasked values of a masked block outside PLAUSIBLE_REFLECTANCE."""
    low, high = PLAUSIBLE_REFLECTANCE
    data = np.ma.getdata(values)
    return int(np.count_nonzero(((data < low) | (data > high)) & ~np.ma.getmaskarray(values)))


def calibrate_raster(path, output, a, b, descriptions, zero_is_nodata=True, memory_mb=DEFAULT_MEMORY_MB,
                     progress=None, cancel=None, parameter=None, reflectance=False):
    """Write a * DN + b of every band of the raster at `path` to a float32 GeoTIFF, block by block;
    DN 0 is nodata when `zero_is_nodata` (the fill value of the supported products). Returns the
    number of valid values and, for `reflectance`, of those outside PLAUSIBLE_REFLECTANCE; a raster
    without a valid pixel is an InputError naming `parameter`, and nothing is written."""
    valid = implausible = 0
    info = raster_info(path, parameter)
    with RasterWriter(output, info.grid, len(a), DEFAULT_NODATA, descriptions) as writer:
        for window, block in read_blocks(path, memory_mb=memory_mb, extra_bytes_per_pixel=16 * len(a),
                                         dtype=exact_read_type(info), cancel=cancel, progress=progress,
                                         parameter=parameter):
            # plain arrays and a separate mask: numpy.ma arithmetic costs as much as the reads
            invalid = np.ma.getmaskarray(block)
            if zero_is_nodata:
                invalid |= block.data == 0
            calibrated = np.ma.MaskedArray(apply_linear(block.data, a, b), invalid)
            valid += int(calibrated.count())
            if reflectance:
                implausible += implausible_reflectances(calibrated)
            writer.write(window.row, calibrated)
        if not valid:
            raise InputError('every pixel is nodata' + (' or DN 0' if zero_is_nodata else '') +
                             ': nothing to calibrate; check the raster\'s nodata value and ZERO_IS_NODATA.',
                             parameter)
    return valid, implausible


def band_description(band_name, quantity):
    return f'{band_name} {QUANTITY_LABELS[quantity]}'


def sensor_band_name(description):
    """The sensor band of a description written by band_description ("B4" of "B4 TOA reflectance
    (unitless)"); other descriptions unchanged."""
    for label in QUANTITY_LABELS.values():
        if description.endswith(' ' + label):
            return description[:-len(label) - 1]
    return description
