"""Band ratios and normalised differences defined in resources/indices.json.

An index is a sum of terms; a term is combine(numerator bands) / combine(denominator bands) with
combine a signed sum or a product. That covers every published ratio in the table (e.g.
Kalinowski & Oliver's (6+9)/(7+8), (5x7)/6^2, 5/3+1/2) and (a-b)/(a+b), and lets users write
custom ratios as band lists: nothing is ever evaluated as code. Zero denominators give nodata.
"""
import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..raster.blockio import DEFAULT_MEMORY_MB, RasterWriter, raster_info, read_blocks
from ..version import PLUGIN_ROOT

INDEX_TABLE = PLUGIN_ROOT / 'resources' / 'indices.json'
TOKEN = r'[A-Za-z0-9_]+'
BAND_LIST = re.compile(rf'\s*[+-]?\s*{TOKEN}(\s*[+-]?\s*{TOKEN})*\s*')


@dataclass(frozen=True)
class Term:
    """combine(numerator) / combine(denominator); bands are (sign, token) pairs, a token being a
    band name (e.g. 'B8A') or a 1-based band number ('4'). `product` multiplies instead of adding."""
    numerator: tuple
    denominator: tuple
    product: bool = False

    def tokens(self):
        return [token for _, token in self.numerator + self.denominator]


@dataclass(frozen=True)
class Index:
    id: str
    name: str
    sensor: str
    terms: tuple
    source: str

    def tokens(self):
        return list(dict.fromkeys(token for term in self.terms for token in term.tokens()))


@dataclass(frozen=True)
class Sensor:
    id: str
    name: str
    bands: tuple
    aliases: dict


def _plus(names):
    return tuple((1, name) for name in names)


def _terms(entry):
    kind = entry['kind']
    if kind == 'ratio':
        return (Term(_plus(entry['numerator']), _plus(entry['denominator'])),)
    if kind == 'product_ratio':
        return (Term(_plus(entry['numerator']), _plus(entry['denominator']), product=True),)
    if kind == 'ratio_sum':
        return tuple(Term(_plus(t['numerator']), _plus(t['denominator'])) for t in entry['terms'])
    if kind == 'normalized_difference':
        first, second = entry['bands']
        return (Term(((1, first), (-1, second)), ((1, first), (1, second))),)
    raise ValueError(f'index {entry["id"]}: unknown kind "{kind}" in {INDEX_TABLE.name}')


@cache
def load_table(path=INDEX_TABLE):
    """(sensors by id, indices by id, reference texts by key) from the JSON table."""
    table = json.loads(Path(path).read_text(encoding='utf-8'))
    sensors = {key: Sensor(key, value['name'], tuple(value['bands']), dict(value.get('aliases', {})))
               for key, value in table['sensors'].items()}
    indices = {}
    for entry in table['indices']:
        indices[entry['id']] = Index(entry['id'], entry['name'], entry['sensor'], _terms(entry),
                                     entry['source'])
    return sensors, indices, dict(table['references'])


def sensor_indices(sensor_id):
    return [index for index in load_table()[1].values() if index.sensor == sensor_id]


def normalise_band_name(name):
    """'b04' -> 'B4', 'B8a' -> 'B8A', ' b3n ' -> 'B3N'; other names upper-cased."""
    text = re.sub(r'\s+', '', str(name or '')).upper()
    match = re.fullmatch(r'B0*(\d+)([A-Z]?)', text)
    return f'B{int(match.group(1))}{match.group(2)}' if match else text


def band_lookup(sensor, band_count, descriptions, band_order=None, parameter=None):
    """Map band names to 1-based band numbers of the input raster, and say how.

    With `band_order` (one name per input band) those names are used; else band descriptions when
    at least one matches a band name of the sensor; else the sensor's standard stack order.
    """
    layout = sensor.bands if sensor else ()
    aliases = sensor.aliases if sensor else {}
    if band_order:
        names = [normalise_band_name(name) for name in band_order]
        if len(names) != band_count:
            raise InputError(f'{len(names)} band names given for a raster with {band_count} bands; '
                             'give one name per input band, in band order, separated by commas.',
                             parameter)
        method = 'the band names given'
    else:
        names = [normalise_band_name(text) for text in descriptions]
        method = 'band descriptions'
        if sensor and not any(aliases.get(name, name) in layout for name in names):
            names = list(layout[:band_count])
            method = f'band position in the {sensor.name} stack order ({", ".join(layout)})'
    lookup = {}
    for number, name in enumerate(names, start=1):
        if name:
            lookup.setdefault(aliases.get(name, name), number)
    return lookup, method


def band_number(token, lookup, band_count):
    """1-based band number of a token (a number or a name), or None when the raster lacks it."""
    if token.isdigit():
        number = int(token)
        return number if 1 <= number <= band_count else None
    return lookup.get(normalise_band_name(token))


def missing_tokens(index, lookup, band_count):
    return [token for token in index.tokens() if band_number(token, lookup, band_count) is None]


def parse_band_list(text, parameter=None):
    """'4+6', 'B8-B4', '5 7' -> ((1, '4'), (1, '6')), ...; a space means '+'. Band numbers or names only."""
    text = str(text or '')
    if not BAND_LIST.fullmatch(text):
        raise InputError(f'"{text}" is not a band list; write band numbers or names joined by + or - '
                         '(e.g. 4+6, B8-B4).', parameter)
    return tuple((-1 if sign == '-' else 1, token)
                 for sign, token in re.findall(rf'([+-]?)\s*({TOKEN})', text))


def cell_text(cell):
    """A matrix cell as text; a whole number QGIS has turned into a float (qgis_process reads the cells
    "4" and "3" of CUSTOM_RATIOS=r,4,3 as 4.0 and 3.0) as the band number it was."""
    text = str(cell).strip()
    return text[:text.index('.')] if re.fullmatch(r'\d+\.0*', text) else text


def parse_custom_ratios(cells, parameter=None):
    """Custom ratios from a flat list [name, numerator, denominator, name, ...] (a matrix parameter)."""
    cells = [cell_text(cell) for cell in (cells or [])]
    if not any(cells):
        return []
    if len(cells) % 3:
        raise InputError('each custom ratio needs three cells: name, numerator bands, denominator bands '
                         f'({len(cells)} cells given).', parameter)
    ratios = []
    for start in range(0, len(cells), 3):
        name, numerator, denominator = cells[start:start + 3]
        term = Term(parse_band_list(numerator, parameter), parse_band_list(denominator, parameter))
        name = name or f'({numerator})/({denominator})'
        ratios.append(Index(f'custom_{start // 3 + 1}', name, 'custom', (term,), 'user-defined ratio'))
    return ratios


def _combine(pairs, values, product):
    """Signed sum (or product) of the bands named in `pairs`; always a new array."""
    if product:
        result = values[pairs[0][1]].copy()
        for _, token in pairs[1:]:
            result *= values[token]
        return result
    result = pairs[0][0] * values[pairs[0][1]]
    for sign, token in pairs[1:]:
        result += sign * values[token]
    return result


def evaluate(index, values):
    """Index over arrays: `values` maps each token of the index to a float array (masked arrays
    are accepted and their masked values treated as NaN).

    Returns a masked array, masked where any input is nodata, a denominator is exactly zero, or the
    result is not finite. Works on plain NaN-filled float arrays in place (plain arrays rather than
    numpy.ma arithmetic: half the memory and several times faster on large blocks).
    """
    values = {token: np.ma.filled(np.ma.asarray(array, dtype=np.float64), np.nan)
              for token, array in values.items()}
    total = None
    with np.errstate(divide='ignore', invalid='ignore', over='ignore'):
        for term in index.terms:
            ratio = _combine(term.numerator, values, term.product)
            denominator = _combine(term.denominator, values, term.product)
            denominator[denominator == 0] = np.nan
            ratio /= denominator
            del denominator
            total = ratio if total is None else np.add(total, ratio, out=total)
    return np.ma.masked_invalid(total, copy=False)


def evaluate_all(indices, bands, lookup, band_count):
    """Stack of indices (len(indices), rows, cols) from `bands`: band number -> array (masked or
    NaN for nodata)."""
    filled = {number: np.ma.filled(np.ma.asarray(array, dtype=np.float64), np.nan)
              for number, array in bands.items()}
    stack = None
    for position, index in enumerate(indices):
        values = {token: filled[band_number(token, lookup, band_count)] for token in index.tokens()}
        layer = evaluate(index, values)
        if stack is None:
            stack = np.empty((len(indices), *layer.shape))
        stack[position] = layer.filled(np.nan)
    return np.ma.masked_invalid(stack, copy=False)


def check_some_valid(valid, parameter=None):
    if not np.any(valid):
        raise InputError('every output pixel is nodata: the bands are nodata everywhere (or every '
                         'denominator is zero); check the input\'s nodata value and band order.', parameter)


def write_indices(path, indices, lookup, band_count, output, memory_mb=DEFAULT_MEMORY_MB, progress=None,
                  cancel=None, parameter=None, require_valid=True):
    """Write the indices of the raster at `path` to a float32 GeoTIFF (one band each, described by
    its name), block by block; returns the count of valid pixels of each index. Without any valid
    pixel (and `require_valid`) nothing is written and InputError names `parameter`."""
    numbers = sorted({band_number(token, lookup, band_count)
                      for index in indices for token in index.tokens()})
    valid = np.zeros(len(indices), dtype=np.int64)
    with RasterWriter(output, raster_info(path, parameter).grid, len(indices),
                      descriptions=[index.name for index in indices]) as writer:
        # NaN-filled copy of each band; per index the float64 result with its mask and the
        # writer's two float64 copies; numerator, denominator and their masks while evaluating
        extra = 8 * len(numbers) + 26 * len(indices) + 34
        for window, block in read_blocks(path, numbers, memory_mb, extra_bytes_per_pixel=extra,
                                         cancel=cancel, progress=progress, parameter=parameter):
            result = evaluate_all(indices, dict(zip(numbers, block)), lookup, band_count)
            valid += result.count(axis=(1, 2))
            writer.write(window.row, result)
        if require_valid:
            check_some_valid(valid, parameter)
    return valid


def normalized_difference(first, second):
    """(first - second) / (first + second) of two masked arrays, e.g. NDVI (Rouse et al. 1974)."""
    term = Term(((1, 'a'), (-1, 'b')), ((1, 'a'), (1, 'b')))
    return evaluate(Index('nd', 'normalized difference', 'custom', (term,), ''), {'a': first, 'b': second})


def select_indices(sensor, requested, lookup, band_count, input_parameter=None, indices_parameter=None):
    """(chosen, skipped) preset indices. `requested` ids must exist and be computable from the
    raster's bands; with none requested, every preset index the bands allow (the rest skipped)."""
    available = sensor_indices(sensor.id)
    by_id = {index.id: index for index in available}
    layout = ', '.join(sensor.bands)
    if requested:
        unknown = [name for name in requested if name not in by_id]
        if unknown:
            raise InputError(f'unknown index id(s) {", ".join(unknown)} for {sensor.name}; choose from '
                             f'{", ".join(by_id)}.', indices_parameter)
        chosen = [by_id[name] for name in requested]
        lacking = {index.id: missing_tokens(index, lookup, band_count) for index in chosen}
        lacking = {key: value for key, value in lacking.items() if value}
        if lacking:
            detail = '; '.join(f'{key} needs {", ".join(value)}' for key, value in lacking.items())
            raise InputError(f'the {band_count}-band raster lacks bands the selected indices need '
                             f'({detail}); '
                             f'the {sensor.name} preset expects {len(sensor.bands)} bands ({layout}). '
                             'Choose a raster with those bands, name its bands with BAND_ORDER, or drop '
                             'those ids from INDICES.', input_parameter)
        return chosen, []
    chosen = [index for index in available if not missing_tokens(index, lookup, band_count)]
    skipped = [index for index in available if index not in chosen]
    if not chosen:
        raise InputError(f'the raster has {band_count} band(s), too few for any {sensor.name} index: the '
                         f'preset expects {len(sensor.bands)} bands ({layout}). Choose the right SENSOR, a '
                         'raster with those bands, or name its bands with BAND_ORDER.', input_parameter)
    return chosen, skipped
