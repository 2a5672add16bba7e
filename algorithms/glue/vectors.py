"""Reading sample points from a vector layer into arrays, with the checks every algorithm needs."""
import math
from dataclasses import dataclass, field

import numpy as np
from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsProcessingException,
    QgsWkbTypes,
)

from ...core.errors import CancelledError
from . import compat


@dataclass
class PointSamples:
    """Usable samples: coordinates in the target CRS, one float64 array per requested field."""
    x: np.ndarray
    y: np.ndarray
    values: dict
    feature_ids: np.ndarray
    skipped: dict = field(default_factory=dict)  # reason -> number of features left out

    def __len__(self):
        return len(self.x)

    def skipped_text(self):
        return ', '.join(f'{count} {reason}' for reason, count in self.skipped.items() if count)


def numeric_field_names(source, names, key):
    """Check that every name is a numeric field of `source`; QgsProcessingException otherwise."""
    fields = source.fields()
    for name in names:
        index = fields.lookupField(name)
        if index < 0:
            raise QgsProcessingException(f'{key}: the layer has no field "{name}"; choose one of '
                                         f'{", ".join(fields.names())}.')
        if not fields.at(index).isNumeric():
            raise QgsProcessingException(
                f'{key}: field "{name}" is of type {fields.at(index).typeName()}, not numeric; '
                'choose a numeric field or convert it with the Field Calculator (to_real()).')
    return list(names)


def read_points(source, field_names, key, context, feedback=None, target_crs=None):
    """Read point features of `source` (a QgsProcessingFeatureSource).

    Features with no geometry, NULL or non-finite values in any requested field are skipped and
    counted; coordinates are transformed to `target_crs` (a QgsCoordinateReferenceSystem or WKT)
    when given. Raises QgsProcessingException naming `key` on a non-point layer, CancelledError
    when the user cancels.
    """
    if source is None:
        raise QgsProcessingException(f'{key}: choose a point layer.')
    if QgsWkbTypes.geometryType(source.wkbType()) != compat.POINT_GEOMETRY:
        raise QgsProcessingException(f'{key}: the layer must hold points, not '
                                     f'{QgsWkbTypes.displayString(source.wkbType())}.')
    numeric_field_names(source, field_names, key)
    indices = [source.fields().lookupField(name) for name in field_names]
    transform = None
    if target_crs is not None:
        if isinstance(target_crs, str):
            target_crs = QgsCoordinateReferenceSystem.fromWkt(target_crs)
        if source.sourceCrs().isValid() and source.sourceCrs() != target_crs:
            transform = QgsCoordinateTransform(source.sourceCrs(), target_crs,
                                               context.transformContext())
    xs, ys, ids, rows = [], [], [], []
    skipped = {'without geometry': 0, 'with NULL or non-finite values': 0}
    for feature in source.getFeatures():
        if feedback is not None and feedback.isCanceled():
            raise CancelledError('cancelled while reading the samples')
        geometry = feature.geometry()
        if geometry is None or geometry.isEmpty():
            skipped['without geometry'] += 1
            continue
        row = [feature.attribute(index) for index in indices]
        try:
            row = [float(value) for value in row]
        except (TypeError, ValueError):
            row = None
        if row is None or not all(math.isfinite(value) for value in row):
            skipped['with NULL or non-finite values'] += 1
            continue
        point = geometry.centroid().asPoint() if geometry.isMultipart() else geometry.asPoint()
        if transform is not None:
            point = transform.transform(point)
        xs.append(point.x())
        ys.append(point.y())
        ids.append(feature.id())
        rows.append(row)
    table = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(field_names))
    return PointSamples(np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64),
                        {name: table[:, i] for i, name in enumerate(field_names)},
                        np.asarray(ids, dtype=np.int64), skipped)
