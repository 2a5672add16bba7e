"""Checks every algorithm makes before any work (RsGeochemAlgorithm.processAlgorithm), so that a run
that cannot finish fails at once, names the parameter and leaves nothing behind:

- numbers are finite (QGIS's own range check lets "nan" through);
- every destination can be written: its folder (or the nearest existing parent) is a writable
  folder, the path itself is not a folder, the extension is one the output is written in, two
  outputs do not share a file and no output is one of the inputs (after resolving links).

`explain_invalid` turns QGIS's terse "Incorrect parameter value for KEY" into a reason.
"""
import math
import os
import re
from pathlib import Path

from osgeo import gdal
from qgis.core import (
    QgsProcessingFeatureSourceDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterVectorDestination,
    QgsProcessingUtils,
)

from ...core.errors import InputError
from . import compat

PROVIDER_PREFIX = re.compile(r'^[a-z]{2,}:', re.IGNORECASE)  # memory:, ogr:, postgres:, ...
FILTER_EXTENSION = re.compile(r'\*\.(\w+)')


def number_text(value):
    return str(int(value)) if float(value).is_integer() else f'{value:g}'


def range_text(definition):
    """'Range: 0 to 100.' for a number parameter with limits, '' without."""
    if not isinstance(definition, QgsProcessingParameterNumber):
        return ''
    low, high = definition.minimum(), definition.maximum()
    has_low, has_high = low > -1e300, high < 1e300
    if has_low and has_high:
        return f'Range: {number_text(low)} to {number_text(high)}.'
    if has_low:
        return f'Range: {number_text(low)} or more.'
    if has_high:
        return f'Range: up to {number_text(high)}.'
    return ''


def check_numbers(algorithm, parameters, context):
    for definition in algorithm.parameterDefinitions():
        key = definition.name()
        if isinstance(definition, QgsProcessingParameterNumber) and parameters.get(key) is not None:
            value = algorithm.parameterAsDouble(parameters, key, context)
            if not math.isfinite(value):
                raise InputError(f'{value} is not a number; give a finite number. '
                                 f'{range_text(definition)}'.strip(), key)


def destination_path(algorithm, parameters, definition, context):
    """File path a destination parameter writes, or '' (not set, or not a file: memory:, ogr:...)."""
    key = definition.name()
    if isinstance(definition, QgsProcessingParameterFileDestination):
        path = algorithm.parameterAsFileOutput(parameters, key, context)
    elif isinstance(definition, (QgsProcessingParameterRasterDestination, QgsProcessingParameterFeatureSink,
                                 QgsProcessingParameterVectorDestination)):
        path = algorithm.parameterAsOutputLayer(parameters, key, context)
    else:
        return ''
    return '' if not path or PROVIDER_PREFIX.match(path) else path


def allowed_extensions(definition):
    if isinstance(definition, QgsProcessingParameterRasterDestination):
        return definition.supportedOutputRasterLayerExtensions()
    if isinstance(definition, (QgsProcessingParameterFeatureSink, QgsProcessingParameterVectorDestination)):
        return definition.supportedOutputVectorLayerExtensions()
    if isinstance(definition, QgsProcessingParameterFileDestination):
        return FILTER_EXTENSION.findall(definition.fileFilter())
    return []


def checked_extension(definition, path, feedback):
    """The path the output is written to, after checking (or, for vector layers without one,
    adding) its extension."""
    key, extensions = definition.name(), allowed_extensions(definition)
    suffix = Path(path).suffix.lower().lstrip('.')
    is_vector = isinstance(definition, (QgsProcessingParameterFeatureSink,
                                        QgsProcessingParameterVectorDestination))
    if not suffix and is_vector:  # QGIS appends the default format's extension
        path = f'{path}.{definition.defaultFileExtension()}'
        feedback.pushWarning(f'{key}: the file name has no extension: the layer is written as "{path}".')
        return path
    if extensions and suffix not in [extension.lower() for extension in extensions]:
        shown = ', '.join(f'.{extension}' for extension in extensions[:8])
        raise InputError(f'"{path}" does not end in {shown}{"..." if len(extensions) > 8 else ""}, the '
                         'formats this output can be written in; choose a file name with one of these '
                         'extensions.', key)
    return path


def check_writable(path, key):
    """InputError when `path` cannot be written: it is a folder, a parent is a file, or the folder
    (or, when missing, its nearest existing parent, where the missing folders are created) or an
    existing file is not writable."""
    target = Path(path)
    if target.is_dir():
        raise InputError(f'"{path}" is a folder; give a file name inside it.', key)
    folder = target.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise InputError(f'"{folder}" is a file, not a folder, so "{path}" cannot be created; choose '
                         'another folder.', key)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f'the folder "{folder}" is not writable; choose a folder you can write to.', key)
    if target.exists() and not os.access(target, os.W_OK):
        raise InputError(f'"{path}" exists and is read-only; choose another file name.', key)


def layer_path(layer):
    """File of a layer ('path|layername=...' -> 'path'), or '' for non-file layers."""
    return layer.source().split('|')[0] if layer is not None else ''


def input_paths(algorithm, parameters, context):
    """{real path: parameter key} of every file an input parameter reads."""
    found = {}
    for definition in algorithm.parameterDefinitions():
        key, value = definition.name(), parameters.get(definition.name())
        if definition.isDestination() or value is None:
            continue
        paths = []
        if isinstance(definition, QgsProcessingParameterFile):
            paths = [algorithm.parameterAsFile(parameters, key, context)]
        elif isinstance(definition, QgsProcessingParameterMultipleLayers):
            paths = [layer_path(layer) for layer in algorithm.parameterAsLayerList(parameters, key, context)]
        elif isinstance(definition, QgsProcessingParameterFeatureSource):
            if isinstance(value, QgsProcessingFeatureSourceDefinition):
                value = value.source.staticValue()
            paths = [layer_path(QgsProcessingUtils.mapLayerFromString(str(value), context))]
        elif isinstance(definition, QgsProcessingParameterRasterLayer):
            paths = [layer_path(algorithm.parameterAsRasterLayer(parameters, key, context))]
        for path in paths:
            if path and os.path.exists(path):
                found.setdefault(os.path.realpath(path), key)
    return found


def check_destinations(algorithm, parameters, context, feedback):
    inputs = input_paths(algorithm, parameters, context)
    written = {}
    for definition in algorithm.destinationParameterDefinitions():
        key = definition.name()
        path = destination_path(algorithm, parameters, definition, context)
        if not path:
            continue
        path = checked_extension(definition, path, feedback)
        check_writable(path, key)
        real = os.path.realpath(path)
        if real in inputs:
            raise InputError(f'"{path}" is the file of input {inputs[real]}: an output never replaces an '
                             'input; choose another file name.', key)
        if real in written:
            raise InputError(f'"{path}" is also the file of output {written[real]}; give each output its '
                             'own file.', key)
        written[real] = key


def check_parameters(algorithm, parameters, context, feedback):
    check_numbers(algorithm, parameters, context)
    check_destinations(algorithm, parameters, context, feedback)


def explain_invalid(algorithm, parameters, context):
    """A reason for the first parameter QGIS refuses, naming it, or '' when there is none to add."""
    for definition in algorithm.parameterDefinitions():
        key, value = definition.name(), parameters.get(definition.name())
        if definition.checkValueIsAcceptable(value, context):
            continue
        if value is None or value == '':
            if not definition.flags() & compat.PARAMETER_OPTIONAL:
                return f'{key}: this parameter is required; give a value.'
            continue
        return reason(definition, value) or ''
    return ''


def reason(definition, value):
    key = definition.name()
    if isinstance(definition, QgsProcessingParameterNumber):
        return f'{key}: {value} is not accepted. {range_text(definition)}'.strip()
    if isinstance(definition, QgsProcessingParameterEnum):
        options = '; '.join(f'{index} = {option}' for index, option in enumerate(definition.options()))
        return f'{key}: {value} is not one of the options ({options}).'
    if not isinstance(value, str):
        return ''
    if not os.path.exists(value):
        return f'{key}: "{value}" not found; check the path.'
    if isinstance(definition, QgsProcessingParameterFile) and definition.extension():
        return (f'{key}: "{value}" is not a .{definition.extension()} file; choose a '
                f'.{definition.extension()} file.')
    if isinstance(definition, QgsProcessingParameterRasterLayer):
        try:
            gdal.Open(value)
        except RuntimeError as error:
            return f'{key}: "{value}" is not a raster GDAL can read ({error}); choose a GeoTIFF.'
        return f'{key}: "{value}" could not be loaded as a raster layer; choose a GeoTIFF.'
    if isinstance(definition, QgsProcessingParameterFeatureSource):
        return f'{key}: "{value}" could not be loaded as a vector layer; choose a GeoPackage or shapefile.'
    return ''
