"""rsgeochem.* metadata_props of ONNX inversion models (see notes: ONNX model contract).

Dictionaries here use the short key names ('features', 'input_layout', ...); in the model each is
stored as 'rsgeochem.<name>' with a string value (JSON for lists and dicts).
"""
import json
import math
from datetime import UTC, datetime

from ..dependencies import require
from ..errors import InputError
from ..version import plugin_version

PREFIX = 'rsgeochem.'
# short key -> kind of the stored string: 'json' (list/dict), 'int' or 'text'
KEYS = {
    'features': 'json',
    'input_layout': 'text',
    'patch_size': 'int',
    'normalisation': 'json',
    'feature_range': 'json',   # {'min': [...], 'max': [...]} of the training features
    'target_field': 'text',
    'target_units': 'text',
    'model_type': 'text',
    'architecture': 'text',
    'split': 'json',
    'metrics': 'json',
    'training_date': 'text',
    'plugin_version': 'text',
}
LAYOUTS = ('pixel', 'tiled', 'patch')
MODEL_TYPES = ('cnn', 'mlr', 'plsr', 'rf')


def _short(key):
    return key[len(PREFIX):] if key.startswith(PREFIX) else key


def _finite(value):
    """Non-finite floats (an RPD of infinity, an R² of NaN) become null: strict JSON has neither."""
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def encode(metadata):
    """{short or full key: value} -> {'rsgeochem.<key>': string}; adds training_date (UTC, ISO 8601)
    and plugin_version when missing. Unknown keys are refused (typos would be silent otherwise)."""
    values = {_short(key): value for key, value in metadata.items()}
    unknown = sorted(set(values) - set(KEYS))
    if unknown:
        raise ValueError(f'unknown rsgeochem metadata keys: {unknown}; known: {sorted(KEYS)}')
    values.setdefault('training_date', datetime.now(UTC).isoformat(timespec='seconds'))
    values.setdefault('plugin_version', plugin_version())
    encoded = {}
    for key, value in values.items():
        if value is None:
            continue
        text = json.dumps(_finite(value), allow_nan=False) if KEYS[key] == 'json' else str(value)
        encoded[PREFIX + key] = text
    return encoded


def write_metadata(model_proto, metadata):
    """Set the rsgeochem.* metadata_props of `model_proto` (an onnx.ModelProto) from `metadata`,
    replacing earlier values of the same keys and keeping other props; returns the model."""
    encoded = encode(metadata)
    kept = [(prop.key, prop.value) for prop in model_proto.metadata_props if prop.key not in encoded]
    del model_proto.metadata_props[:]
    for key, value in kept + sorted(encoded.items()):
        prop = model_proto.metadata_props.add()
        prop.key, prop.value = key, value
    return model_proto


def parse_metadata(props, parameter=None):
    """{'rsgeochem.<key>': string} (e.g. onnxruntime's custom_metadata_map, or every prop of a
    model) -> {short key: parsed value}; keys without the prefix are ignored. An empty dict means
    the model carries no rsgeochem metadata. Raises InputError naming `parameter` on a broken value."""
    parsed = {}
    for key, text in props.items():
        if not key.startswith(PREFIX) or _short(key) not in KEYS:
            continue
        short = _short(key)
        try:
            if KEYS[short] == 'json':
                parsed[short] = json.loads(text)
            elif KEYS[short] == 'int':
                parsed[short] = int(text)
            else:
                parsed[short] = text
        except ValueError as error:
            raise InputError(f'the model\'s metadata "{key}" is not readable ({error}); '
                             're-export the model with traininversionmodel.', parameter) from error
    layout = parsed.get('input_layout')
    if layout is not None and layout not in LAYOUTS:
        raise InputError(f'the model\'s metadata "{PREFIX}input_layout" is "{layout}", not one of '
                         f'{", ".join(LAYOUTS)}.', parameter)
    return parsed


def read_metadata(path, parameter=None):
    """Parsed rsgeochem metadata of the .onnx file at `path` (see parse_metadata); weights are not
    loaded. Raises InputError naming `parameter` when the file is not an ONNX model."""
    onnx = require('onnx')
    from google.protobuf.message import DecodeError  # protobuf comes with onnx
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (OSError, ValueError, DecodeError) as error:
        raise InputError(f'"{path}" is not a readable ONNX model ({error}).', parameter) from error
    return parse_metadata({prop.key: prop.value for prop in model.metadata_props}, parameter)
