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

# Each enum below moved into the Qgis namespace in the QGIS release noted, some members renamed; the
# old class-scoped enum is what 3.22 has.

# Processing source types: Qgis.ProcessingSourceType since QGIS 3.36 (TypeVectorPoint -> VectorPoint)
_SOURCE_TYPE = getattr(Qgis, 'ProcessingSourceType', None)
SOURCE_POINTS = _SOURCE_TYPE.VectorPoint if _SOURCE_TYPE else QgsProcessing.SourceType.TypeVectorPoint
SOURCE_POLYGONS = _SOURCE_TYPE.VectorPolygon if _SOURCE_TYPE else QgsProcessing.SourceType.TypeVectorPolygon
SOURCE_TABLE = _SOURCE_TYPE.Vector if _SOURCE_TYPE else QgsProcessing.SourceType.TypeVector
SOURCE_RASTER = _SOURCE_TYPE.Raster if _SOURCE_TYPE else QgsProcessing.SourceType.TypeRaster

# "Advanced" parameter flag: Qgis.ProcessingParameterFlag since QGIS 3.36 (FlagAdvanced -> Advanced)
_PARAMETER_FLAG = getattr(Qgis, 'ProcessingParameterFlag', None)
PARAMETER_ADVANCED = (_PARAMETER_FLAG.Advanced if _PARAMETER_FLAG
                      else QgsProcessingParameterDefinition.Flag.FlagAdvanced)
PARAMETER_OPTIONAL = (_PARAMETER_FLAG.Optional if _PARAMETER_FLAG
                      else QgsProcessingParameterDefinition.Flag.FlagOptional)

# "Not in the Graphical Modeler": Qgis.ProcessingAlgorithmFlag since QGIS 3.36 (FlagHideFromModeler
# -> HideFromModeler)
_ALGORITHM_FLAG = getattr(Qgis, 'ProcessingAlgorithmFlag', None)
ALGORITHM_HIDE_FROM_MODELER = (_ALGORITHM_FLAG.HideFromModeler if _ALGORITHM_FLAG
                               else QgsProcessingAlgorithm.Flag.FlagHideFromModeler)

# Coarse geometry types: Qgis.GeometryType since QGIS 3.30 (PolygonGeometry -> Polygon)
_GEOMETRY_TYPE = getattr(Qgis, 'GeometryType', None)
POINT_GEOMETRY = _GEOMETRY_TYPE.Point if _GEOMETRY_TYPE else QgsWkbTypes.GeometryType.PointGeometry
POLYGON_GEOMETRY = _GEOMETRY_TYPE.Polygon if _GEOMETRY_TYPE else QgsWkbTypes.GeometryType.PolygonGeometry

# WKT variant GDAL reads best: Qgis.CrsWktVariant since QGIS 3.36 (WKT_PREFERRED_GDAL -> PreferredGdal)
_WKT_VARIANT = getattr(Qgis, 'CrsWktVariant', None)
WKT_PREFERRED_GDAL = (_WKT_VARIANT.PreferredGdal if _WKT_VARIANT
                      else QgsCoordinateReferenceSystem.WktVariant.WKT_PREFERRED_GDAL)

# Label placement over the point / centroid: Qgis.LabelPlacement since QGIS 3.26. The unscoped
# QgsPalLayerSettings.OverPoint is another enum there (LabelPredefinedPointPosition): assigning it
# to QgsPalLayerSettings.placement raises TypeError (seen on 3.40).
_LABEL_PLACEMENT = getattr(Qgis, 'LabelPlacement', None)
LABEL_OVER_POINT = _LABEL_PLACEMENT.OverPoint if _LABEL_PLACEMENT else QgsPalLayerSettings.Placement.OverPoint


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
