"""Readers of product metadata files: Landsat MTL.txt, Sentinel-2 MTD_MSIL1C.xml, GF-2 scene XML.

Each reader returns a SceneMetadata; a file of another kind or an unreadable file raises
InputError naming the METADATA parameter.

Tags read (local names, namespaces ignored):
- Landsat MTL (Collection 1 and 2): SPACECRAFT_ID, SENSOR_ID, DATE_ACQUIRED, SUN_ELEVATION,
  EARTH_SUN_DISTANCE; RADIANCE_MULT_BAND_n, RADIANCE_ADD_BAND_n, REFLECTANCE_MULT_BAND_n,
  REFLECTANCE_ADD_BAND_n inside the (LEVEL1_)RADIOMETRIC_RESCALING group.
- Sentinel-2 MTD_MSIL1C.xml: SPACECRAFT_NAME, PRODUCT_START_TIME, PROCESSING_BASELINE,
  QUANTIFICATION_VALUE, RADIO_ADD_OFFSET (band_id), U, SOLAR_IRRADIANCE (bandId); the sun zenith
  from Mean_Sun_Angle/ZENITH_ANGLE of the same file or of GRANULE/*/MTD_TL.xml beside it.
- GF-2 <ProductMetaData>: SatelliteID, SensorID, CenterTime (else StartTime, else ReceiveTime),
  SolarZenith (elevation = 90 - zenith), else SolarElevation.
"""
import math
import re
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from ..errors import InputError

METADATA = 'METADATA'
MTL_RESCALING = re.compile(r'^(RADIANCE|REFLECTANCE)_(MULT|ADD)_BAND_(\w+)$')


@dataclass
class SceneMetadata:
    kind: str
    path: str
    spacecraft: str = ''
    instrument: str = ''
    date: date = None
    sun_elevation: float = None          # degrees
    earth_sun_distance: float = None     # astronomical units
    # band name -> {'radiance_mult', 'radiance_add', 'reflectance_mult', 'reflectance_add',
    #               'esun', 'radio_add_offset'}
    bands: dict = field(default_factory=dict)
    quantification_value: float = None
    processing_baseline: str = ''


def read_text(path, parameter=METADATA):
    try:
        raw = Path(path).read_bytes()
    except OSError as error:
        raise InputError(f'cannot read "{path}" ({error.strerror}); choose the product metadata file.',
                         parameter) from error
    # USGS MTL files of some archives are padded with NUL bytes.
    return raw.replace(b'\x00', b'').decode('utf-8', errors='replace')


def parse_date(text, parameter):
    try:
        return date.fromisoformat(str(text).strip()[:10])
    except ValueError as error:
        raise InputError(f'"{text}" is not a date (YYYY-MM-DD).', parameter) from error


def read_landsat_mtl(path, parameter=METADATA):
    text = read_text(path, parameter)
    values, rescaling, groups = {}, {}, []
    for line in text.splitlines():
        key, sep, value = line.partition('=')
        if not sep:
            continue
        key, value = key.strip(), value.strip().strip('"')
        if key == 'GROUP':
            groups.append(value)
        elif key == 'END_GROUP':
            groups = groups[:-1]
        elif groups and groups[-1].endswith('RADIOMETRIC_RESCALING') and MTL_RESCALING.match(key):
            quantity, term, band = MTL_RESCALING.match(key).groups()
            rescaling.setdefault(f'B{band}', {})[f'{quantity.lower()}_{term.lower()}'] = float(value)
        else:
            values.setdefault(key, value)
    if 'SPACECRAFT_ID' not in values or not rescaling:
        raise InputError(f'"{path}" is not a Landsat MTL.txt file (no SPACECRAFT_ID or '
                         'RADIANCE_MULT_BAND_n); give the scene\'s *_MTL.txt.', parameter)
    when = values.get('DATE_ACQUIRED') or values.get('ACQUISITION_DATE')
    return SceneMetadata(
        kind='landsat_mtl', path=str(path), spacecraft=values['SPACECRAFT_ID'],
        instrument=values.get('SENSOR_ID', ''), date=parse_date(when, parameter) if when else None,
        sun_elevation=float(values['SUN_ELEVATION']) if 'SUN_ELEVATION' in values else None,
        earth_sun_distance=float(values['EARTH_SUN_DISTANCE']) if 'EARTH_SUN_DISTANCE' in values else None,
        bands=rescaling)


def parse_xml(path, parameter):
    text = read_text(path, parameter)
    try:
        root = ElementTree.fromstring(text.encode('utf-8'))
    except ElementTree.ParseError as error:
        raise InputError(f'"{path}" is not a readable XML file ({error}); give the product\'s '
                         'metadata XML.', parameter) from error
    return root


def local(element):
    return element.tag.rsplit('}', 1)[-1]


def first_text(root, *names):
    """Text of the first element whose local name is one of `names` (in that preference order)."""
    found = {}
    for element in root.iter():
        name = local(element)
        if name in names and name not in found and (element.text or '').strip():
            found[name] = element.text.strip()
    for name in names:
        if name in found:
            return found[name]
    return None


def mean_sun_zenith(root):
    for element in root.iter():
        if local(element) == 'Mean_Sun_Angle':
            zenith = first_text(element, 'ZENITH_ANGLE')
            if zenith is not None:
                return float(zenith)
    return None


def read_sentinel2_mtd(path, parameter=METADATA):
    root = parse_xml(path, parameter)
    quantification = first_text(root, 'QUANTIFICATION_VALUE')
    spacecraft = first_text(root, 'SPACECRAFT_NAME')
    if quantification is None or not (spacecraft or '').startswith('Sentinel-2'):
        raise InputError(f'"{path}" is not a Sentinel-2 L1C MTD_MSIL1C.xml (no QUANTIFICATION_VALUE '
                         'or SPACECRAFT_NAME); give the product\'s MTD_MSIL1C.xml.', parameter)
    by_id = {}
    for element in root.iter():
        name = local(element)
        if name == 'RADIO_ADD_OFFSET':
            by_id.setdefault(int(element.get('band_id')), {})['radio_add_offset'] = float(element.text)
        elif name == 'SOLAR_IRRADIANCE':
            by_id.setdefault(int(element.get('bandId')), {})['esun'] = float(element.text)
    u = first_text(root, 'U')
    zenith = mean_sun_zenith(root)
    if zenith is None:
        for tile in sorted(Path(path).parent.glob('GRANULE/*/MTD_TL.xml')):
            zenith = mean_sun_zenith(parse_xml(tile, parameter))
            break
    when = first_text(root, 'PRODUCT_START_TIME', 'DATATAKE_SENSING_START')
    return SceneMetadata(
        kind='sentinel2_mtd', path=str(path), spacecraft=spacecraft, instrument='MSI',
        date=parse_date(when, parameter) if when else None,
        sun_elevation=90.0 - zenith if zenith is not None else None,
        earth_sun_distance=1.0 / math.sqrt(float(u)) if u else None,
        bands={f'id{band_id}': values for band_id, values in by_id.items()},
        quantification_value=float(quantification),
        processing_baseline=first_text(root, 'PROCESSING_BASELINE') or '')


def read_gf2_xml(path, parameter=METADATA):
    root = parse_xml(path, parameter)
    satellite = first_text(root, 'SatelliteID')
    if local(root) != 'ProductMetaData' or satellite is None:
        raise InputError(f'"{path}" is not a Gaofen scene XML (<ProductMetaData> with <SatelliteID>); '
                         'give the .xml delivered with the GF-2 scene.', parameter)
    when = first_text(root, 'CenterTime', 'StartTime', 'ReceiveTime')
    zenith = first_text(root, 'SolarZenith')
    elevation = first_text(root, 'SolarElevation')
    sun_elevation = 90.0 - float(zenith) if zenith is not None else \
        float(elevation) if elevation is not None else None
    return SceneMetadata(kind='gf2_xml', path=str(path), spacecraft=satellite,
                         instrument=first_text(root, 'SensorID') or '',
                         date=parse_date(when, parameter) if when else None,
                         sun_elevation=sun_elevation)


READERS = {'landsat_mtl': read_landsat_mtl, 'sentinel2_mtd': read_sentinel2_mtd, 'gf2_xml': read_gf2_xml}


def read_metadata(path, kind=None, parameter=METADATA):
    """Read a metadata file of `kind`, or of whichever kind its content shows when kind is None."""
    if kind is None:
        head = read_text(path, parameter).lstrip()[:4000]
        kind = 'landsat_mtl' if not head.startswith('<') else \
            'gf2_xml' if 'ProductMetaData' in head else 'sentinel2_mtd'
    return READERS[kind](path, parameter)
