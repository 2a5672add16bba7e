"""Sensor tables (resources/sensors/*.json, every number with its source) and band-name handling.

A table lists each sensor's bands (name, label, and where published: ESUN in W m-2 um-1, ASTER
unit conversion coefficients), the metadata file kind it reads and its natural band order.
"""
import json
import math
from dataclasses import dataclass
from functools import lru_cache

from ..errors import InputError
from ..version import PLUGIN_ROOT

SENSOR_DIR = PLUGIN_ROOT / 'resources' / 'sensors'
GENERIC = 'generic'

# Enum order of the SENSOR parameter: a public contract, append only.
SENSOR_IDS = ('gf2_pms1', 'gf2_pms2', 'landsat8_oli', 'landsat9_oli2', 'landsat4_tm', 'landsat5_tm',
              'landsat7_etm', 'sentinel2_msi_l1c', 'aster_l1t', GENERIC)


@dataclass(frozen=True)
class SensorBand:
    name: str
    label: str
    esun: float = None       # W m-2 um-1, None where not tabulated
    ucc: dict = None         # ASTER: gain setting -> W m-2 sr-1 um-1 per DN
    band_id: int = None      # Sentinel-2 bandId in MTD_MSIL1C.xml


@dataclass(frozen=True)
class Sensor:
    id: str
    name: str
    metadata: str            # metadata kind (see sensor_metadata.READERS) or None
    spacecraft: tuple
    bands: tuple
    natural_order: tuple
    sources: dict
    notes: str = ''
    instrument: str = ''
    quantification_value: float = None
    radio_add_offset: float = None
    dn_offset: float = 0.0

    def band(self, name):
        for band in self.bands:
            if band.name == name:
                return band
        raise KeyError(name)

    @property
    def band_names(self):
        return tuple(band.name for band in self.bands)


@lru_cache(maxsize=1)
def load_sensors():
    """All sensors of resources/sensors/*.json plus the generic one, keyed by id."""
    sensors = {GENERIC: Sensor(GENERIC, 'Generic (user gains, offsets, ESUN)', None, (), (), (), {})}
    for path in sorted(SENSOR_DIR.glob('*.json')):
        table = json.loads(path.read_text(encoding='utf-8'))
        for entry in table['sensors']:
            bands = tuple(SensorBand(b['name'], b.get('label', ''), b.get('esun'), b.get('ucc'),
                                     b.get('band_id')) for b in entry['bands'])
            sensors[entry['id']] = Sensor(
                id=entry['id'], name=entry['name'], metadata=entry.get('metadata'),
                spacecraft=tuple(entry.get('spacecraft', ())), bands=bands,
                natural_order=tuple(entry['natural_order']), sources=table['sources'],
                notes=table.get('notes', ''), instrument=entry.get('instrument', ''),
                quantification_value=entry.get('quantification_value'),
                radio_add_offset=entry.get('radio_add_offset'), dn_offset=entry.get('dn_offset', 0.0))
    return sensors


def sensor_by_index(index):
    return load_sensors()[SENSOR_IDS[index]]


def sensor_names():
    sensors = load_sensors()
    return [sensors[sensor_id].name for sensor_id in SENSOR_IDS]


def parse_list(text, parameter, convert=float, what='number'):
    """Comma- or space-separated values of a text parameter; [] for empty text."""
    items = [item for item in str(text or '').replace(';', ',').replace(' ', ',').split(',') if item]
    try:
        values = [convert(item) for item in items]
    except ValueError as error:
        raise InputError(f'"{text}" is not a comma-separated list of {what}s ({error}).',
                         parameter) from error
    if convert is float and not all(math.isfinite(value) for value in values):
        raise InputError(f'"{text}" holds a value that is not a finite number; give finite numbers.',
                         parameter)
    return values


def resolve_band_names(sensor, text, band_count, parameter='BAND_LIST'):
    """Sensor band names of the raster's bands: BAND_LIST, or the sensor's natural order.

    Generic bands are named B1..Bn after their position when BAND_LIST is empty."""
    names = parse_list(text, parameter, str.strip, 'band name')
    names = [name.upper() for name in names]
    if not names:
        names = list(sensor.natural_order) if sensor.id != GENERIC else \
            [f'B{i + 1}' for i in range(band_count)]
    if len(names) != band_count:
        raise InputError(f'{len(names)} band names ({", ".join(names)}) for a raster of {band_count} '
                         f'bands; give one {sensor.name} band name per raster band, in raster order.',
                         parameter)
    if sensor.id != GENERIC:
        unknown = [name for name in names if name not in sensor.band_names]
        if unknown:
            raise InputError(f'{", ".join(unknown)} not a band of {sensor.name}; choose among '
                             f'{", ".join(sensor.band_names)}.', parameter)
    if len(set(names)) != len(names):
        raise InputError(f'band names repeat ({", ".join(names)}); name each raster band once.',
                         parameter)
    return names
