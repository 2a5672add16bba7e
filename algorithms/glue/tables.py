"""Tables without geometry written to a feature sink: field names from free text, rows, closing
the sink and naming the layer loaded on completion."""
import re

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsFeature,
    QgsFeatureSink,
    QgsField,
    QgsFields,
    QgsProcessingException,
    QgsWkbTypes,
)

from .base import name_output_layer


def table_fields(columns):
    """QgsFields from (name, compat.FIELD_* type) pairs."""
    fields = QgsFields()
    for name, kind in columns:
        fields.append(QgsField(name, kind))
    return fields


def field_names(labels, taken, prefix=''):
    """`labels` (e.g. band names) as unique field names of letters, digits and underscores, after
    `prefix`, none equal (case-insensitively) to another or to a name in `taken`."""
    names, seen = [], {name.lower() for name in taken}
    for label in labels:
        base = prefix + (re.sub(r'\W+', '_', label).strip('_') or 'band')
        name, suffix = base, 1
        while name.lower() in seen:
            suffix += 1
            name = f'{base}_{suffix}'
        seen.add(name.lower())
        names.append(name)
    return names


def write_table(algorithm, parameters, key, context, fields, rows, layer_name):
    """Write `rows` (attribute lists in the order of `fields`) to the optional table output `key`.
    Returns {key: destination}, or {} when the output is skipped; the sink is closed (the file
    complete) on return. A destination that cannot be created raises an error naming `key`."""
    sink, destination = algorithm.parameterAsSink(parameters, key, context, fields,
                                                  QgsWkbTypes.Type.NoGeometry, QgsCoordinateReferenceSystem())
    if sink is None:
        if parameters.get(key):
            raise QgsProcessingException(f'{key}: {algorithm.invalidSinkError(parameters, key)} '
                                         'Choose another destination.')
        return {}
    for row in rows:
        feature = QgsFeature(fields)
        feature.setAttributes(list(row))
        sink.addFeature(feature, QgsFeatureSink.Flag.FastInsert)
    del sink  # closes (commits) a file output now, not when the garbage collector runs
    name_output_layer(context, destination, layer_name)
    return {key: destination}
