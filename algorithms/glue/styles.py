"""How outputs look once QGIS loads them: a human name and a style, applied by a layer
post-processor (QgsProcessingLayerPostProcessorInterface) when the layer is in the project.

`name_output_layer` (glue/base.py) attaches an OutputLayer to a destination; the style functions
here (`content`, `variance`, `difference`, `keep_mask`, `out_of_range`, `categories`,
`natural_colour`, `rgb`, `ramp_on_band`, `anomaly_areas`) each return a function that styles a
loaded layer. Rasters are stretched to the 2-98 % cumulative cut of their values, as QGIS's own
default for multiband images, so a few extreme pixels do not wash the map out.

Only APIs present from QGIS 3.22 to 4 are used (colour ramps built here rather than read from the
user's style database, enums fully scoped, no enum arguments where a default serves).
"""
import math
import re

from qgis.core import (
    QgsBasicNumericFormat,
    QgsColorRampLegendNodeSettings,
    QgsColorRampShader,
    QgsContrastEnhancement,
    QgsFillSymbol,
    QgsGradientColorRamp,
    QgsGradientStop,
    QgsMultiBandColorRenderer,
    QgsPalettedRasterRenderer,
    QgsPalLayerSettings,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingUtils,
    QgsRasterLayer,
    QgsRasterShader,
    QgsSingleBandPseudoColorRenderer,
    QgsSingleSymbolRenderer,
    QgsTextFormat,
    QgsVectorLayer,
    QgsVectorLayerSimpleLabeling,
)
from qgis.PyQt.QtGui import QColor

from . import compat

CUT = (0.02, 0.98)            # cumulative cut of the stretch (QGIS's default for multiband images)
SAMPLE_PIXELS = 250000        # pixels sampled for the stretch (QGIS's default statistics sample)
# ColorBrewer ramps (Brewer 2002, colorbrewer2.org): Spectral reversed for contents (low blue, high
# red, the usual geochemical map), BuPu for variances, Set2/Dark2 for categories
CONTENT_COLOURS = ('#3288bd', '#99d594', '#e6f598', '#ffffbf', '#fee08b', '#fc8d59', '#d53e4f')
VARIANCE_COLOURS = ('#edf8fb', '#bfd3e6', '#9ebcda', '#8c96c6', '#8856a7', '#810f7c')
DIVERGING_COLOURS = ('#d73027', '#fc8d59', '#fee08b', '#ffffbf', '#d9ef8b', '#91cf60', '#1a9850')
DIFFERENCE_COLOURS = ('#2166ac', '#67a9cf', '#d1e5f0', '#f7f7f7', '#fddbc7', '#ef8a62', '#b2182b')
CATEGORY_COLOURS = ('#66c2a5', '#fc8d62', '#8da0cb', '#e78ac3', '#a6d854', '#ffd92f', '#e5c494',
                    '#1b9e77', '#d95f02', '#7570b3', '#e7298a', '#66a61e', '#e6ab02', '#a6761d')
CONCENTRATION_UNITS = ('%', 'wt%', 'ppm', 'ppb', 'g/t', 'mg/kg', 'µg/g', 'ug/g', 'µg/kg', 'ppt')
MASKED_COLOUR = QColor(90, 90, 90, 200)
ANOMALY_RED = '227,26,28'
ANOMALY_COLOUR = '#e31a1c'


class OutputLayer(QgsProcessingLayerPostProcessorInterface):
    """Names a loaded output and applies its style. The name is set here too, because QGIS may
    have named the layer after its file (Processing's "prefer file name as layer name" setting)."""

    # Processing holds only a C++ pointer: each run's instance is kept here, or Python deletes it
    # before the layer is loaded (the objects are tiny; a batch run makes one per output)
    instances = []

    def __init__(self, name, style=None):
        super().__init__()
        self.name, self.style = name, style

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802 - QGIS API
        layer.setName(self.name)
        if self.style is not None and layer.isValid():
            self.style(layer)
        layer.triggerRepaint()

    @classmethod
    def create(cls, name, style=None):
        cls.instances.append(cls(name, style))
        return cls.instances[-1]


def units_in(description):
    """The units a band description carries in its last parentheses ("kriged (% RE2O3)" -> "% RE2O3"),
    or ''."""
    match = re.search(r'\(([^()]*)\)\s*$', description or '')
    return match.group(1).strip() if match else ''


def layer_label(layer, fallback):
    """The layer's name, or `fallback` for a layer Processing wrote to its temporary folder (named
    after the output key, e.g. "OUTPUT", which means nothing to a reader)."""
    source = layer.source().split('|')[0] if layer is not None else ''
    if not source or source.startswith(QgsProcessingUtils.tempFolder()):
        return fallback
    return layer.name()


def element_and_unit(units):
    """("RE2O3", "%") of units written "% RE2O3" or "RE2O3 %" (also ppm, ppb, g/t, mg/kg), else
    ("", units)."""
    words = (units or '').split()
    unit = [word for word in words if word.lower() in CONCENTRATION_UNITS]
    if len(words) == 2 and len(unit) == 1:
        return next(word for word in words if word != unit[0]), unit[0]
    return '', units or ''


def gradient(colours):
    """A continuous QgsGradientColorRamp through `colours` (hex strings), evenly spaced."""
    stops = [QgsGradientStop(i / (len(colours) - 1), QColor(colour))
             for i, colour in enumerate(colours[1:-1], start=1)]
    return QgsGradientColorRamp(QColor(colours[0]), QColor(colours[-1]), False, stops)


def stretch(layer, band):
    """(low, high) of the 2-98 % cumulative cut of a raster band; (min, max) when the cut is flat."""
    provider = layer.dataProvider()
    low, high = provider.cumulativeCut(band, *CUT, layer.extent(), SAMPLE_PIXELS)
    if not high > low:
        statistics = provider.bandStatistics(band)
        low, high = statistics.minimumValue, statistics.maximumValue
    return low, high


def legend_format(low, high):
    """Legend numbers with about three significant digits over the range low-high."""
    numbers = QgsBasicNumericFormat()
    span = high - low
    numbers.setNumberDecimalPlaces(max(0, 2 - math.floor(math.log10(span))) if span > 0 else 2)
    return numbers


def ramp_on_band(colours, band=1, suffix='', symmetric=False):
    """Single-band pseudocolour on `colours`, stretched 2-98 % (`symmetric`: around 0), `suffix`
    (units) in the legend."""
    def apply(layer):
        if not isinstance(layer, QgsRasterLayer):
            return
        low, high = stretch(layer, band)
        if symmetric:
            high = max(abs(low), abs(high))
            low = -high
        shader_function = QgsColorRampShader(low, high, gradient(colours))
        shader_function.classifyColorRamp(len(colours), band, layer.extent(), layer.dataProvider())
        legend = QgsColorRampLegendNodeSettings()
        legend.setSuffix(f' {suffix}' if suffix else '')
        legend.setNumericFormat(legend_format(low, high))
        shader_function.setLegendSettings(legend)
        shader = QgsRasterShader(low, high)
        shader.setRasterShaderFunction(shader_function)
        renderer = QgsSingleBandPseudoColorRenderer(layer.dataProvider(), band, shader)
        renderer.setClassificationMin(low)
        renderer.setClassificationMax(high)
        layer.setRenderer(renderer)
    return apply


def content(units=''):
    """Element content map: blue (low) to red (high), units in the legend."""
    return ramp_on_band(CONTENT_COLOURS, 1, units)


def variance(units=''):
    """Kriging variance (or another uncertainty map): white to purple."""
    return ramp_on_band(VARIANCE_COLOURS, 1, units)


def difference(units=''):
    """A difference of two maps: blue (negative) through white (0) to red (positive)."""
    return ramp_on_band(DIFFERENCE_COLOURS, 1, units, symmetric=True)


def diverging(band=1):
    """Indices and band ratios: red (low) to green (high)."""
    return ramp_on_band(DIVERGING_COLOURS, band)


def categorical(classes):
    """Paletted renderer of band 1 with (value, QColor, label) classes."""
    def apply(layer):
        if not isinstance(layer, QgsRasterLayer):
            return
        palette = [QgsPalettedRasterRenderer.Class(value, colour, label) for value, colour, label in classes]
        layer.setRenderer(QgsPalettedRasterRenderer(layer.dataProvider(), 1, palette))
    return apply


def keep_mask():
    """A keep/mask raster (1 keep, 0 masked): masked pixels dark grey, kept ones transparent, so the
    mask can lie over the image."""
    return categorical([(0, MASKED_COLOUR, 'masked (water, vegetation, buildings, polygons)'),
                        (1, QColor(255, 255, 255, 0), 'kept (bare soil and rock)')])


def out_of_range():
    """Flags of pixels outside the range a model was fitted on: outside in red, inside transparent."""
    return categorical([(1, QColor(ANOMALY_COLOUR), 'outside the training range'),
                        (0, QColor(255, 255, 255, 0), 'inside the training range')])


def categories(label='class'):
    """Integer classes (e.g. K-means clusters): one colour per value found in the raster."""
    def apply(layer):
        if not isinstance(layer, QgsRasterLayer):
            return
        found = QgsPalettedRasterRenderer.classDataFromRaster(layer.dataProvider(), 1)
        values = [item.value for item in found]
        categorical([(value, QColor(CATEGORY_COLOURS[i % len(CATEGORY_COLOURS)]), f'{label} {value:g}')
                     for i, value in enumerate(values)])(layer)
    return apply


def rgb(red, green, blue):
    """Multiband colour composite, each band stretched 2-98 %."""
    def apply(layer):
        if not isinstance(layer, QgsRasterLayer):
            return
        provider = layer.dataProvider()
        renderer = QgsMultiBandColorRenderer(provider, red, green, blue)
        for band, setter in ((red, renderer.setRedContrastEnhancement),
                             (green, renderer.setGreenContrastEnhancement),
                             (blue, renderer.setBlueContrastEnhancement)):
            enhancement = QgsContrastEnhancement(provider.dataType(band))
            enhancement.setContrastEnhancementAlgorithm(
                QgsContrastEnhancement.ContrastEnhancementAlgorithm.StretchToMinimumMaximum)
            low, high = stretch(layer, band)
            enhancement.setMinimumValue(low)
            enhancement.setMaximumValue(high)
            setter(enhancement)
        layer.setRenderer(renderer)
    return apply


def natural_colour(descriptions, red_green_blue=None):
    """Colour composite of a multiband image: the given (red, green, blue) band numbers, else the
    bands whose descriptions name red, green and blue, else bands 3, 2, 1 (true colour for GF-2,
    Landsat TM/ETM+ and most 4-band sensors); one band: a grey-free pseudocolour stretch."""
    if red_green_blue is None:
        words = [description.lower() for description in descriptions]
        found = [next((i + 1 for i, text in enumerate(words) if colour in text.split()), None)
                 for colour in ('red', 'green', 'blue')]
        red_green_blue = found if None not in found else (3, 2, 1)
    if len(descriptions) < 3:
        return diverging()
    return rgb(*red_green_blue)


def anomaly_areas():
    """Anomalies as drawn on a prospecting map: red outline over a light red fill that leaves the
    content map visible, labelled with the rank I, II, ..."""
    def apply(layer):
        if not isinstance(layer, QgsVectorLayer):
            return
        layer.setRenderer(QgsSingleSymbolRenderer(QgsFillSymbol.createSimple(
            {'color': f'{ANOMALY_RED},50', 'outline_color': f'{ANOMALY_RED},255', 'outline_width': '0.6'})))
        labels = QgsPalLayerSettings()
        labels.fieldName = 'rank_label'
        labels.placement = compat.LABEL_OVER_POINT
        text = QgsTextFormat()
        text.setSize(10)
        text.buffer().setEnabled(True)
        labels.setFormat(text)
        layer.setLabeling(QgsVectorLayerSimpleLabeling(labels))
        layer.setLabelsEnabled(True)
    return apply
