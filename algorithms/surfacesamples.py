"""Processing glue: the surface-to-surface sample set (kriged value + band values per sample)."""
import math

from qgis.core import (
    QgsFeature,
    QgsFeatureSink,
    QgsField,
    QgsFields,
    QgsGeometry,
    QgsPointXY,
    QgsProcessingException,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsWkbTypes,
)

from ..core.geostat.surface_samples import WINDOW_SIZES, band_field_names, surface_samples
from .glue import compat
from .glue.base import RsGeochemAlgorithm, name_output_layer, progress_callbacks, raster_path
from .glue.fields import read_sample_points
from .glue.vectors import numeric_field_names

FIXED_FIELDS = (('sample_fid', compat.FIELD_LONG), ('measured', compat.FIELD_DOUBLE),
                ('kriged', compat.FIELD_DOUBLE), ('kriging_var', compat.FIELD_DOUBLE),
                ('densified', compat.FIELD_INT), ('window_px', compat.FIELD_INT),
                ('target', compat.FIELD_DOUBLE))
# TARGET_VALUE choices: what the "target" field (the content a model learns) holds at a sample
TARGET_CHOICES = ('Content at the sample itself (measured value)', 'Kriged content at the pixel centre')
AT_SAMPLE, AT_PIXEL_CENTRE = range(2)


class SurfaceSamplesAlgorithm(RsGeochemAlgorithm):
    ALGORITHM_ID = 'surfacesamples'
    DISPLAY_NAME = 'Surface-to-surface sample set'
    GROUP_ID = 'sampling'
    TAGS = ('samples', 'kriging', 'training set', 'extract', 'band values', 'densify')
    HELP = (
        'Builds the "surface-to-surface" sample set of Cheng et al. (2023): for each geochemical sample, '
        'the kriged content at its pixel and the image\'s band values there, so that a model can learn '
        'content from spectra. The kriged value is that of the pixel centre, so it differs from the '
        'measured one wherever the variogram has a nugget and the sample is off the centre, and everywhere '
        'when "Kriging" used a Measurement-error variance (then it is the error-free content). The '
        'field "target" holds the content a model should learn (Target value): by default the content of '
        'the sample itself, which keeps the pixel-scale part of the content that the pixel\'s spectrum '
        'explains; or the kriged value at the pixel centre, which has lost that part into the nugget.\n'
        'Use it after "Kriging" (with the image as reference raster) and before "Correlation of a field '
        'with features" and "Train inversion model". Give the Image (surface reflectance), the Geochemical '
        'samples and their Measured value field, the Kriged prediction and optionally the Kriging variance '
        'and a Mask (e.g. from "Surface mask"); these rasters must be on the image\'s pixel lattice (same '
        'CRS, pixel size and alignment): the whole image or a window of it, e.g. kriged over the samples\' '
        'extent.\n'
        'Output: points in the image\'s CRS with the fields sample_fid, measured, kriged, kriging_var (NULL '
        'without a variance raster), densified (0/1), window_px (valid pixels averaged), target, then one '
        'field per band named after the band description (letters, digits and _, unique; band_1, band_2, ... '
        'where a band has none).\n'
        'Method details. Band values are the mean over a 1 × 1, 3 × 3 or 5 × 5 window (Window for band '
        'values) centred on the sample\'s pixel, skipping nodata and masked pixels and the parts outside '
        'the image. Samples outside the image or outside the kriged or variance raster, on a masked pixel '
        '(mask value 0, nodata or outside the mask), on nodata in any band or in the kriged or variance '
        'raster, with a NULL value or without geometry are left out and counted in the log. Densification '
        '(Densification radius above 0): every other valid pixel '
        'whose centre lies within the radius (image CRS units) of a sample inside the image and whose '
        'kriging variance is below the Largest kriging variance of a densified pixel is added once, at its '
        'pixel centre, with densified = 1 and a NULL measured value. The rasters are not resampled: run '
        '"Kriging" with the image as reference raster, or align them with GDAL Warp. Only the row blocks '
        'around samples are read, so memory does not grow with the image.')

    INPUT = 'INPUT'
    SAMPLES = 'SAMPLES'
    FIELD = 'FIELD'
    KRIGED = 'KRIGED'
    VARIANCE = 'VARIANCE'
    MASK = 'MASK'
    WINDOW = 'WINDOW'
    RADIUS = 'RADIUS'
    MAX_VARIANCE = 'MAX_VARIANCE'
    TARGET_VALUE = 'TARGET_VALUE'
    OUTPUT = 'OUTPUT'

    def initAlgorithm(self, config=None):
        self.add(QgsProcessingParameterRasterLayer(self.INPUT, self.tr('Image')),
                 'Multispectral image (e.g. surface reflectance); every band becomes a field.')
        self.add(QgsProcessingParameterFeatureSource(
            self.SAMPLES, self.tr('Geochemical samples'), [compat.SOURCE_POINTS]),
            'Point layer of the samples; transformed to the image CRS when it differs.')
        self.add(QgsProcessingParameterField(
            self.FIELD, self.tr('Measured value field'), parentLayerParameterName=self.SAMPLES,
            type=QgsProcessingParameterField.DataType.Numeric),
            'Numeric field with the measured content (e.g. RE2O3 %), copied to "measured".')
        self.add(QgsProcessingParameterRasterLayer(self.KRIGED, self.tr('Kriged prediction')),
                 'Kriged content on the image\'s pixel lattice (band 1), over the image or a window of it '
                 'that covers the samples, e.g. the prediction of "Kriging" with the image as reference '
                 'raster.')
        self.add(QgsProcessingParameterRasterLayer(
            self.VARIANCE, self.tr('Kriging variance'), optional=True),
            'Kriging variance on the image\'s pixel lattice like the Kriged prediction (band 1, units² of '
            'the content). Needed for densification.')
        self.add(QgsProcessingParameterRasterLayer(self.MASK, self.tr('Mask'), optional=True),
                 'Optional raster on the image\'s pixel lattice: 1 keeps a pixel, 0 (or nodata, or no '
                 'pixel there) excludes it, e.g. from "Surface mask" to drop vegetation, water and '
                 'buildings.')
        self.add(QgsProcessingParameterEnum(
            self.WINDOW, self.tr('Window for band values'), [f'{n}x{n} pixels' for n in WINDOW_SIZES],
            defaultValue=0),
            'Band values are the mean over this window centred on the pixel (1x1: the pixel itself).')
        self.add(QgsProcessingParameterNumber(
            self.RADIUS, self.tr('Densification radius (map units, 0 = none)'),
            QgsProcessingParameterNumber.Type.Double, 0.0, False, 0.0, 1e9),
            'Also add every pixel whose centre lies within this distance (map units of the image '
            'CRS) of a sample and whose kriging variance is below the Largest kriging variance of a '
            'densified pixel. 0 adds none.',
            advanced=True)
        self.add(QgsProcessingParameterNumber(
            self.MAX_VARIANCE, self.tr('Largest kriging variance of a densified pixel'),
            QgsProcessingParameterNumber.Type.Double, 0.0, False, 0.0, 1e30),
            'Densified pixels need a kriging variance strictly below this (units² of the content). '
            'Required (above 0) with a Densification radius above 0.', advanced=True)
        self.add(QgsProcessingParameterEnum(
            self.TARGET_VALUE, self.tr('Target value (field "target")'), list(TARGET_CHOICES),
            defaultValue=AT_SAMPLE),
            'The content paired with the pixel\'s spectrum in the field "target", which "Correlation" and '
            '"Train inversion model" should use. Content at the sample itself (default): the measured value, '
            'which is also the value the kriged surface takes at the sample\'s own position (Kriging without '
            'measurement error reproduces its data), i.e. the paper\'s pairing of the spectrum with the '
            'content of the kriged surface in the pixel that holds the sample; it keeps the pixel-scale '
            'variation of the content (the nugget), which the pixel\'s spectrum can explain, and carries the '
            'analytical error, which averages out in a regression. Kriged content at the pixel centre: the '
            'Kriged prediction raster\'s value (the "kriged" field); it equals the measured value only for '
            'samples on pixel centres with exact Kriging; elsewhere it is the content smoothed over the '
            'neighbouring samples, so the model learns the smooth part of the content and the map misses '
            'its pixel-scale part. Densified pixels have no sample and always take the kriged value.')
        self.add_block_memory()
        self.add(QgsProcessingParameterFeatureSink(
            self.OUTPUT, self.tr('Surface-to-surface samples'), compat.SOURCE_POINTS),
            'Point layer with measured, kriged, kriging_var, densified, window_px, target and one field per '
            'band.')

    def execute(self, parameters, context, feedback):
        image = raster_path(self, parameters, self.INPUT, context)
        kriged = raster_path(self, parameters, self.KRIGED, context)
        variance, mask = (raster_path(self, parameters, key, context)
                          if self.parameterAsRasterLayer(parameters, key, context) else None
                          for key in (self.VARIANCE, self.MASK))
        image_crs = self.parameterAsRasterLayer(parameters, self.INPUT, context).crs()
        source = self.parameterAsSource(parameters, self.SAMPLES, context)
        field = compat.parameter_as_strings(self, parameters, self.FIELD, context)
        if source is None or not field:
            raise QgsProcessingException(f'{self.SAMPLES if source is None else self.FIELD}: choose the '
                                         'point layer of samples and its numeric field of measured values.')
        field = numeric_field_names(source, field[:1], self.FIELD)[0]
        if not image_crs.isValid() and source.sourceCrs().isValid():
            feedback.pushWarning(f'{self.INPUT} has no CRS: sample coordinates are used as they are.')
        points = read_sample_points(source, [field], self.SAMPLES, context, feedback,
                                    image_crs if image_crs.isValid() else None)
        if len(points) == 0:
            raise QgsProcessingException(f'{self.SAMPLES}: no sample with a point and a value in '
                                         f'field "{field}" ({points.skipped_text()}); choose the '
                                         'layer and FIELD that hold the measured values.')
        progress, cancel = progress_callbacks(feedback)
        result = surface_samples(
            image, kriged, points.x, points.y, variance, mask,
            window=WINDOW_SIZES[self.parameterAsEnum(parameters, self.WINDOW, context)],
            radius=self.parameterAsDouble(parameters, self.RADIUS, context),
            max_variance=self.parameterAsDouble(parameters, self.MAX_VARIANCE, context),
            memory_mb=self.block_memory(parameters, context), progress=progress, cancel=cancel)
        if result.skipped_text():
            feedback.pushWarning(f'{self.SAMPLES}: left out {result.skipped_text()}.')
        densified = int(result.densified.sum())
        feedback.pushInfo(f'{len(result.source) - densified} samples and {densified} densified pixels.')

        at_sample = self.parameterAsEnum(parameters, self.TARGET_VALUE, context) == AT_SAMPLE
        output = self.write_output(parameters, context, result, points.feature_ids,
                                   points.values[field], image_crs, at_sample)
        name_output_layer(context, output, f'Surface-to-surface samples ({field})')
        return {self.OUTPUT: output}

    def write_output(self, parameters, context, result, feature_ids, measured, crs, at_sample):
        fields = QgsFields()
        for name, kind in FIXED_FIELDS:
            fields.append(QgsField(name, kind))
        reserved = ['fid', *(name for name, _ in FIXED_FIELDS)]
        for name in band_field_names(result.descriptions, reserved):
            fields.append(QgsField(name, compat.FIELD_DOUBLE))
        sink, sink_id = self.parameterAsSink(parameters, self.OUTPUT, context, fields,
                                             QgsWkbTypes.Type.Point, crs)
        if sink is None:
            raise QgsProcessingException(self.invalidSinkError(parameters, self.OUTPUT))
        for i, source_index in enumerate(result.source):
            sample = int(source_index) >= 0
            measured_value = float(measured[source_index]) if sample else None
            feature = QgsFeature(fields)
            feature.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(result.x[i], result.y[i])))
            feature.setAttributes([
                int(feature_ids[source_index]) if sample else None, measured_value,
                float(result.kriged[i]), optional_float(result.variance[i]), int(not sample),
                int(result.window_pixels[i]),
                measured_value if sample and at_sample else float(result.kriged[i]),
                *(optional_float(v) for v in result.bands[i])])
            sink.addFeature(feature, QgsFeatureSink.Flag.FastInsert)
        del sink  # closes (commits) a file output now, not when the garbage collector runs
        return sink_id


def optional_float(value):
    """NULL for NaN (a band whose whole window is nodata, or no VARIANCE raster)."""
    value = float(value)
    return None if math.isnan(value) else value
