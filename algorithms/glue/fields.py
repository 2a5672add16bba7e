"""Reading the fields an algorithm works on from its INPUT / TARGET / FEATURES parameters, and the
sample points of a layer, with the checks and messages every such algorithm needs."""
from qgis.core import QgsProcessingException

from . import compat
from .vectors import numeric_field_names, read_points

INPUT, TARGET, FEATURES = 'INPUT', 'TARGET', 'FEATURES'


def target_and_features(algorithm, parameters, context, target_role, every_numeric_by_default):
    """(source, target field name, feature field names) of INPUT, TARGET and FEATURES.

    `target_role` completes "choose the numeric field ..." in the error for an empty TARGET. Empty
    FEATURES: every numeric field but a GeoPackage "fid" when `every_numeric_by_default`, else a
    QgsProcessingException naming FEATURES. Features are returned as chosen (the target and
    repeats included): what to do about those is each algorithm's own rule."""
    source = algorithm.parameterAsSource(parameters, INPUT, context)
    if source is None:
        raise QgsProcessingException(f'{INPUT}: choose a layer or table holding numeric fields.')
    if source.featureCount() == 0:
        raise QgsProcessingException(f'{INPUT}: the layer has no features; choose the layer that holds '
                                     'the samples.')
    target = compat.parameter_as_strings(algorithm, parameters, TARGET, context)
    if not target:
        raise QgsProcessingException(f'{TARGET}: choose the numeric field {target_role}.')
    target = numeric_field_names(source, target[:1], TARGET)[0]
    features = compat.parameter_as_strings(algorithm, parameters, FEATURES, context)
    if features:
        numeric_field_names(source, features, FEATURES)
    elif every_numeric_by_default:
        features = [f.name() for f in source.fields() if f.isNumeric() and f.name().lower() != 'fid']
    else:
        raise QgsProcessingException(f'{FEATURES}: choose at least one numeric feature field.')
    return source, target, features


def read_sample_points(source, field_names, key, context, feedback, target_crs=None):
    """read_points (glue/vectors.py) that logs the features it left out."""
    points = read_points(source, field_names, key, context, feedback, target_crs)
    if points.skipped_text():
        feedback.pushWarning(f'{key}: left out {points.skipped_text()}.')
    return points
