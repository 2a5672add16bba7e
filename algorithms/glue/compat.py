"""Every QGIS API that differs between the releases the plugin supports (QGIS 3.22 LTR, 3.40 and
3.44 LTR, QGIS 4 on Qt6), in one place. Each shim detects the newer API (an attribute or a probe
call), never a version number, and prefers it: older QGIS gets the 3.22 form, newer QGIS no
deprecation warning.

What is not here works unchanged everywhere: `Class.Enum.Member` where the member kept its name
(e.g. QgsProcessingParameterNumber.Type.Double, QgsWkbTypes.Type.Polygon), native in 3.22's sip
and kept by newer QGIS as an alias of the Qgis.* enum the type moved to (scripts/check_qt6.py
rejects the unscoped `Class.Member` form that PyQt6 lacks)."""
from qgis.core import (
    Qgis,
    QgsCoordinateReferenceSystem,
    QgsField,
    QgsPalLayerSettings,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingParameterDefinition,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QMetaType, QVariant

# Processing source types: Qgis.ProcessingSourceType since QGIS 3.36 (members renamed, TypeVectorPoint
# -> VectorPoint); QgsProcessing.SourceType before.
if hasattr(Qgis, 'ProcessingSourceType'):
    SOURCE_POINTS = Qgis.ProcessingSourceType.VectorPoint
    SOURCE_POLYGONS = Qgis.ProcessingSourceType.VectorPolygon
    SOURCE_TABLE = Qgis.ProcessingSourceType.Vector
    SOURCE_RASTER = Qgis.ProcessingSourceType.Raster
else:
    SOURCE_POINTS = QgsProcessing.SourceType.TypeVectorPoint
    SOURCE_POLYGONS = QgsProcessing.SourceType.TypeVectorPolygon
    SOURCE_TABLE = QgsProcessing.SourceType.TypeVector
    SOURCE_RASTER = QgsProcessing.SourceType.TypeRaster

# "Advanced" parameter flag: Qgis.ProcessingParameterFlag.Advanced since QGIS 3.36,
# QgsProcessingParameterDefinition.Flag.FlagAdvanced before.
if hasattr(Qgis, 'ProcessingParameterFlag'):
    PARAMETER_ADVANCED = Qgis.ProcessingParameterFlag.Advanced
else:
    PARAMETER_ADVANCED = QgsProcessingParameterDefinition.Flag.FlagAdvanced

# Algorithm flag "not in the Graphical Modeler": Qgis.ProcessingAlgorithmFlag.HideFromModeler since
# QGIS 3.36, QgsProcessingAlgorithm.Flag.FlagHideFromModeler before.
if hasattr(Qgis, 'ProcessingAlgorithmFlag'):
    ALGORITHM_HIDE_FROM_MODELER = Qgis.ProcessingAlgorithmFlag.HideFromModeler
else:
    ALGORITHM_HIDE_FROM_MODELER = QgsProcessingAlgorithm.Flag.FlagHideFromModeler

# Coarse geometry types: Qgis.GeometryType since QGIS 3.30 (PolygonGeometry -> Polygon),
# QgsWkbTypes.GeometryType before.
if hasattr(Qgis, 'GeometryType'):
    POINT_GEOMETRY = Qgis.GeometryType.Point
    POLYGON_GEOMETRY = Qgis.GeometryType.Polygon
else:
    POINT_GEOMETRY = QgsWkbTypes.GeometryType.PointGeometry
    POLYGON_GEOMETRY = QgsWkbTypes.GeometryType.PolygonGeometry

# WKT variant GDAL reads best: Qgis.CrsWktVariant.PreferredGdal since QGIS 3.36,
# QgsCoordinateReferenceSystem.WktVariant.WKT_PREFERRED_GDAL before.
if hasattr(Qgis, 'CrsWktVariant'):
    WKT_PREFERRED_GDAL = Qgis.CrsWktVariant.PreferredGdal
else:
    WKT_PREFERRED_GDAL = QgsCoordinateReferenceSystem.WktVariant.WKT_PREFERRED_GDAL

# Label placement "over the point / centroid": Qgis.LabelPlacement.OverPoint since QGIS 3.26. The
# unscoped QgsPalLayerSettings.OverPoint is another enum there (LabelPredefinedPointPosition) and
# assigning it to QgsPalLayerSettings.placement raises TypeError (seen on 3.40).
if hasattr(Qgis, 'LabelPlacement'):
    LABEL_OVER_POINT = Qgis.LabelPlacement.OverPoint
else:
    LABEL_OVER_POINT = QgsPalLayerSettings.Placement.OverPoint


def _field_accepts_metatype():
    """QgsField(name, QMetaType.Type) exists since QGIS 3.38 (the QVariant.Type form is deprecated
    there and gone with Qt6); 3.22 raises TypeError for it."""
    try:
        QgsField('probe', QMetaType.Type.Double)
    except TypeError:
        return False
    return True


_FIELD_TAKES_METATYPE = _field_accepts_metatype()


def _field_type(metatype):
    """Attribute field type for QgsField(name, type): the QMetaType.Type where QgsField takes it,
    else the QVariant.Type of the same number (Qt gives both enums equal values for these types)."""
    return metatype if _FIELD_TAKES_METATYPE else QVariant.Type(int(metatype))  # noqa: QGS402 - QGIS < 3.38


FIELD_BOOL = _field_type(QMetaType.Type.Bool)
FIELD_INT = _field_type(QMetaType.Type.Int)
FIELD_LONG = _field_type(QMetaType.Type.LongLong)
FIELD_DOUBLE = _field_type(QMetaType.Type.Double)
FIELD_STRING = _field_type(QMetaType.Type.QString)


def parameter_as_strings(algorithm, parameters, name, context):
    """Field names (or other strings) of a field parameter: parameterAsStrings since QGIS 3.32,
    parameterAsFields (deprecated since 3.40) before."""
    if hasattr(algorithm, 'parameterAsStrings'):
        return algorithm.parameterAsStrings(parameters, name, context)
    return algorithm.parameterAsFields(parameters, name, context)
