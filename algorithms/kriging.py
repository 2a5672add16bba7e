"""Processing glue: ordinary / universal (external drift) Kriging of point samples onto a raster grid."""
from pathlib import Path

import numpy as np
from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsFeature,
    QgsFeatureSink,
    QgsField,
    QgsFields,
    QgsGeometry,
    QgsPointXY,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsWkbTypes,
)

from ..core.distributed import steps
from ..core.geostat import kriging_report
from ..core.geostat.kriging import VariogramFit, fit_for_samples, leave_one_out, variogram_values
from ..core.geostat.kriging_grid import DriftRasters, check_grid_size, count_inside, krige_grid, samples_grid
from ..core.geostat.variogram import VariogramModel, experimental_variogram
from ..core.raster.blockio import check_free_space, raster_bytes, raster_info
from ..core.raster.lattice import window_within
from ..core.report import page
from .glue import compat, styles
from .glue.base import RsGeochemAlgorithm, name_output_layer, progress_callbacks, raster_path
from .glue.cluster import cluster_run
from .variogram import (
    INPUT,
    VARIOGRAM_MODEL,
    add_fit_parameters,
    add_sample_parameters,
    check_projected,
    field_label,
    fit_settings,
    read_point_values,
    to_samples,
)

FLOAT32_MAX = float(np.finfo(np.float32).max)
AUTO_PIXELS = 250  # pixels along the longer side when neither PIXEL_SIZE nor a reference raster is given
GRID_EXTENTS = ('Samples\' extent plus margin', 'Whole reference raster',
                'Samples\' extent plus margin, within the reference raster')
SAMPLES_EXTENT, WHOLE_REFERENCE, SAMPLES_IN_REFERENCE = range(3)
CV_FIELDS = (('x', compat.FIELD_DOUBLE), ('y', compat.FIELD_DOUBLE), ('observed', compat.FIELD_DOUBLE),
             ('predicted', compat.FIELD_DOUBLE), ('variance', compat.FIELD_DOUBLE),
             ('residual', compat.FIELD_DOUBLE), ('zscore', compat.FIELD_DOUBLE))


class KrigingAlgorithm(RsGeochemAlgorithm):
    ALGORITHM_ID = 'kriging'
    DISPLAY_NAME = 'Kriging (ordinary / external drift)'
    GROUP_ID = 'sampling'
    RUNS_ON_CLUSTER = True
    TAGS = ('kriging', 'interpolation', 'geostatistics', 'universal kriging', 'external drift', 'variogram',
            'cross-validation', 'gstat')
    HELP = (
        'Interpolates point samples onto a raster grid by Kriging: a map of the content with its Kriging '
        'variance (the uncertainty), a cross-validation and a report.\n'
        'Use it to map geochemical samples, to put them on the grid of an image (as the rare-earth '
        'inversion does before pairing content with spectra), or to grid a coarse survey for "Laplacian '
        'pyramid fusion". Give the Sample points and their Value field, and a Reference raster (grid '
        'template) to take its CRS, pixel size and alignment (e.g. the satellite image); without one, the '
        'grid uses the layer\'s CRS and the Pixel size. When part of the nugget is analytical error, give '
        'the Measurement-error variance: the map is then smooth through the samples instead of honouring '
        'each measured value. The variogram is fitted automatically (the model with the smallest '
        'cross-validation error); give a Given partial sill and Given range (e.g. from "Variogram") to use '
        'your own. The log and the report warn when the fitted variogram sits on a bound of the fit.\n'
        'Outputs: the Kriging prediction (loaded with a colour ramp), the Kriging variance (its own ramp), '
        'the leave-one-out cross-validation points, an HTML report (grid, variogram, cross-validation), '
        'and as numbers the variogram used (nugget, partial sill, range, model) and the cross-validation '
        'statistics (mean error, RMSE, R², MSDR, ideally 1).\n'
        'Method details. Ordinary Kriging, or universal Kriging with external drifts (KED: the mean is a '
        'linear function of co-located rasters such as elevation, the square root of the distance to a '
        'river or an image band; each band of the External drift rasters is one drift, on the grid\'s '
        'lattice) (Matheron 1963; Webster & Oliver 2007; gstat\'s krige()). Grid: snapped to the reference '
        'raster and covering the samples\' extent plus the Margin around the samples, the Whole '
        'reference raster, or the samples\' extent plus margin within the reference raster (Grid '
        'extent). Points in another CRS are transformed to the grid CRS, which must be projected. '
        'Variogram: fitted as "Variogram" does (weighted least squares); with drifts, on the residuals of '
        'the drift fit, as gstat does. Measurement error: the part of the nugget that is '
        'analytical error is left out of the predicted field (gstat\'s "Err" component; pykrige\'s '
        'exact_values=False when it is the whole nugget). Neighbourhood: the Nearest samples used and/or '
        'those within the Search radius; 0 and 0 use every sample (global Kriging, up to 5000 samples). On '
        'grids every pixel has its own neighbourhood, exactly as if it were kriged alone (pixels that '
        'share their nearest samples share one factorisation); a Shared-neighbourhood block of 2 or more '
        'lets square blocks of pixels share the neighbourhood of their centre instead (2.5-3 times faster '
        'with blocks of 16-32 pixels, in float32, and different from the exact result near the '
        'blocks\' corners). NULL or '
        'non-finite values are skipped and '
        'counted, samples at one location merged (mean); fewer than 5 usable samples, a constant field or '
        'samples outside the grid are errors. Values are in the units of the field (or of its natural log, '
        'not back-transformed), variances in those units squared.')

    REFERENCE_RASTER = 'REFERENCE_RASTER'
    GRID_EXTENT = 'GRID_EXTENT'
    MARGIN = 'MARGIN'
    PIXEL_SIZE = 'PIXEL_SIZE'
    DRIFT_RASTERS = 'DRIFT_RASTERS'
    NUGGET = 'NUGGET'
    SILL = 'SILL'
    RANGE = 'RANGE'
    POWER_EXPONENT = 'POWER_EXPONENT'
    N_NEIGHBOURS = 'N_NEIGHBOURS'
    SEARCH_RADIUS = 'SEARCH_RADIUS'
    NEIGHBOURHOOD_BLOCK = 'NEIGHBOURHOOD_BLOCK'
    OUTPUT = 'OUTPUT'
    OUTPUT_VARIANCE = 'OUTPUT_VARIANCE'
    OUTPUT_CV = 'OUTPUT_CV'
    OUTPUT_HTML = 'OUTPUT_HTML'
    MODEL = 'MODEL'
    CV_ME = 'CV_ME'
    CV_RMSE = 'CV_RMSE'
    CV_R2 = 'CV_R2'
    CV_MSDR = 'CV_MSDR'
    N_SAMPLES = 'N_SAMPLES'
    MEASUREMENT_ERROR = 'MEASUREMENT_ERROR'

    def initAlgorithm(self, config=None):  # noqa: N802 - QGIS API
        add_sample_parameters(self, 'with the value to interpolate')
        self.add(QgsProcessingParameterRasterLayer(
            self.REFERENCE_RASTER, self.tr('Reference raster (grid template)'), optional=True),
            'The output grid takes this raster\'s CRS, pixel size and pixel alignment (e.g. the image the '
            'kriged map will be combined with).')
        self.add(QgsProcessingParameterEnum(
            self.GRID_EXTENT, self.tr('Grid extent'),
            list(GRID_EXTENTS), defaultValue=0),
            'The samples\' extent enlarged by the Margin around the samples (snapped outwards to the '
            'reference grid), the full extent of the Reference raster, or the samples\' extent plus margin '
            'cut to the Reference raster (a window of it: e.g. a map of the sampled area on an image\'s '
            'grid, no pixel beyond the image).')
        self.add(QgsProcessingParameterNumber(
            self.MARGIN, self.tr('Margin around the samples (map units)'),
            QgsProcessingParameterNumber.Type.Double, 0.0, False, 0.0),
            'Distance added on every side of the samples\' bounding box (grid CRS units).')
        self.add(QgsProcessingParameterNumber(
            self.PIXEL_SIZE, self.tr('Pixel size without reference raster (0 = auto)'),
            QgsProcessingParameterNumber.Type.Double, 0.0, False, 0.0),
            f'Square pixel size in layer units when no reference raster is given; 0 gives {AUTO_PIXELS} '
            'pixels along the longer side.')
        self.add(QgsProcessingParameterMultipleLayers(
            self.DRIFT_RASTERS, self.tr('External drift rasters (universal Kriging)'),
            compat.SOURCE_RASTER, optional=True),
            'Rasters on the output grid\'s lattice whose bands are drift variables (e.g. sqrt of the '
            'distance to the river, elevation, a band). Empty: ordinary Kriging.')
        add_fit_parameters(self)
        for key, label, text in (
                (self.NUGGET, 'Given nugget', 'Nugget of a given variogram (with the given partial sill and '
                 'range).'),
                (self.SILL, 'Given partial sill (0 = fit)',
                 'Partial sill of a given variogram; with it and a given range above 0 the variogram is not '
                 'fitted.'),
                (self.RANGE, 'Given range (0 = fit)', 'Range (map units) of a given variogram.')):
            self.add(QgsProcessingParameterNumber(key, self.tr(label),
                                                  QgsProcessingParameterNumber.Type.Double, 0.0, False, 0.0),
                     text)
        self.add(QgsProcessingParameterNumber(
            self.POWER_EXPONENT, self.tr('Given power exponent'), QgsProcessingParameterNumber.Type.Double,
            1.0, False, 0.01, 1.99), 'Exponent of a given power-model variogram.', advanced=True)
        self.add(QgsProcessingParameterNumber(
            self.N_NEIGHBOURS, self.tr('Nearest samples used (0 = all)'),
            QgsProcessingParameterNumber.Type.Integer, 32, False, 0, 10000),
            'Each prediction uses this many nearest samples (also in cross-validation); 0 uses every sample '
            '(global Kriging, slow on large grids).')
        self.add(QgsProcessingParameterNumber(
            self.SEARCH_RADIUS, self.tr('Search radius (0 = unlimited)'),
            QgsProcessingParameterNumber.Type.Double, 0.0, False, 0.0),
            'Only samples within this distance (map units) are used; pixels with too few samples stay '
            'nodata.')
        self.add(QgsProcessingParameterNumber(
            self.NEIGHBOURHOOD_BLOCK, self.tr('Shared-neighbourhood block (pixels, 0 = exact per pixel)'),
            QgsProcessingParameterNumber.Type.Integer, 0, False, 0, 64),
            '0 or 1 (default): every pixel its own neighbourhood, exactly as if each pixel were kriged on '
            'its own. 2 to 64: square blocks of this many pixels share the neighbourhood of their centre '
            '(an approximation near the blocks\' corners; 2.5-3 times faster with blocks of 16-32 pixels, '
            'slower than exact with blocks of 8 pixels or fewer).', advanced=True)
        self.add_block_memory()
        self.add(QgsProcessingParameterRasterDestination(self.OUTPUT, self.tr('Kriging prediction')),
                 'Float32 GeoTIFF of the predicted values.')
        self.add(QgsProcessingParameterRasterDestination(
            self.OUTPUT_VARIANCE, self.tr('Kriging variance'), optional=True),
            'Float32 GeoTIFF of the Kriging variance (squared units of the prediction).')
        self.add(QgsProcessingParameterFeatureSink(
            self.OUTPUT_CV, self.tr('Leave-one-out cross-validation'), compat.SOURCE_POINTS,
            optional=True),
            'One point per sample: x, y, observed, predicted, variance, residual (observed - predicted), '
            'zscore.')
        self.add(QgsProcessingParameterFileDestination(
            self.OUTPUT_HTML, self.tr('Kriging report'), 'HTML files (*.html)', optional=True),
            'HTML report: grid, variogram, cross-validation statistics and plot.')
        self.add(QgsProcessingParameterNumber(
            self.MEASUREMENT_ERROR, self.tr('Measurement-error variance (0 = exact Kriging)'),
            QgsProcessingParameterNumber.Type.Double, 0.0, False, 0.0),
            'Variance of the analytical (laboratory and sampling) error of the values, in squared units of '
            'the field (of its natural log with Natural logarithm of the values), e.g. from duplicate '
            'analyses: SD 0.2 % gives 0.04. It is part of the nugget (a fitted nugget is at least this; a '
            'Given nugget must be at least this). The map then predicts the error-free content: at a sample '
            'it is smoothed towards the neighbours instead of reproducing the measured value, and the '
            'variance is that of the error-free content (gstat\'s "Err" variogram component). 0: exact '
            'Kriging, the prediction on a sample equals its value.')
        for key, label in ((self.NUGGET, 'Nugget used'), (self.SILL, 'Partial sill used'),
                           (self.RANGE, 'Range used'), (self.CV_ME, 'Leave-one-out mean error'),
                           (self.CV_RMSE, 'Leave-one-out RMSE'), (self.CV_R2, 'Leave-one-out R²'),
                           (self.CV_MSDR, 'Leave-one-out MSDR'), (self.N_SAMPLES, 'Samples used')):
            self.addOutput(QgsProcessingOutputNumber(key, self.tr(label)))
        self.addOutput(QgsProcessingOutputString(self.MODEL, self.tr('Variogram model used')))

    def execute(self, parameters, context, feedback):
        progress, cancel = progress_callbacks(feedback, 0, 20)
        reference, reference_key, drift_paths = self.grid_sources(parameters, context)
        target_crs = None
        if reference is not None:
            target_crs = QgsCoordinateReferenceSystem.fromWkt(reference.crs_wkt)
            check_projected(target_crs, reference_key, 'the grid\'s reference raster')
        points, field = read_point_values(self, parameters, context, feedback, target_crs)
        grid = self.output_grid(parameters, context, points, reference)
        self.check_outputs_fit(parameters, context, grid, reference)
        if count_inside(grid, points.x, points.y) == 0:
            raise QgsProcessingException(
                f'{INPUT}: none of the {len(points)} samples lies inside the output grid {grid.extent}; '
                f'choose the samples\' extent ({self.GRID_EXTENT}) or a {self.REFERENCE_RASTER} that '
                'covers them.')
        drift = DriftRasters(drift_paths, grid, self.DRIFT_RASTERS) if drift_paths else None
        drift_values = drift.at_points(points.x, points.y) if drift is not None else None
        samples, notes = to_samples(self, parameters, context, feedback, points, field, drift_values)
        n_neighbours = self.parameterAsInt(parameters, self.N_NEIGHBOURS, context)
        radius = self.parameterAsDouble(parameters, self.SEARCH_RADIUS, context)
        settings = fit_settings(self, parameters, context)
        settings['error_variance'] = self.parameterAsDouble(parameters, self.MEASUREMENT_ERROR, context)
        fit = self.variogram(parameters, context, feedback, settings, samples, n_neighbours, radius, cancel)
        model = fit.model
        feedback.pushInfo(f'variogram {model.name}: nugget {model.nugget:.6g}, partial sill '
                          f'{model.psill:.6g}, range {model.range:.6g}; {len(samples)} samples')
        for warning in fit.warnings:
            feedback.pushWarning(f'Variogram: {warning}')
        progress(1.0)
        cv = leave_one_out(samples, model, n_neighbours, radius, cancel)
        statistics = cv.statistics()
        feedback.pushInfo('leave-one-out: ' + ', '.join(f'{k} {v:.4g}' for k, v in statistics.items()))
        feedback.setProgress(25)
        prediction_path = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        variance_path = self.parameterAsOutputLayer(parameters, self.OUTPUT_VARIANCE, context)
        grid_progress, _ = progress_callbacks(feedback, 25, 100)
        block_pixels = self.parameterAsInt(parameters, self.NEIGHBOURHOOD_BLOCK, context)
        memory_mb = self.block_memory(parameters, context)
        run = cluster_run(feedback, grid_progress, cancel)
        if run is not None:
            summary = steps.krige(run, samples, model, grid, prediction_path, variance_path or None,
                                  drift_paths, n_neighbours, radius, block_pixels, memory_mb)
        else:
            summary = krige_grid(samples, model, grid, prediction_path, variance_path or None, drift,
                                 n_neighbours, radius, block_pixels, memory_mb, grid_progress, cancel)
        if summary.nodata_pixels:
            possible = (('drift values missing there', drift is not None),
                        (f'too few samples within {self.SEARCH_RADIUS}', radius > 0))
            causes = [cause for cause, applies in possible if applies] or ['no solution of the system']
            feedback.pushWarning(f'{summary.nodata_pixels} of {summary.pixels} pixels have no prediction '
                                 f'({" or ".join(causes)}).')
        if variance_path and 2 * model.sill > FLOAT32_MAX:
            feedback.pushWarning(f'{self.OUTPUT_VARIANCE}: variances of order {model.sill:.3g} exceed what '
                                 'a float32 raster holds and are written as nodata; express the field in '
                                 'larger units.')
        label = field_label(self, parameters, context, field)
        name_output_layer(context, prediction_path, f'Kriged {label}', styles.content())
        results = {self.OUTPUT: prediction_path, self.NUGGET: model.nugget, self.SILL: model.psill,
                   self.RANGE: model.range, self.MODEL: model.name, self.CV_ME: statistics['ME'],
                   self.CV_RMSE: statistics['RMSE'], self.CV_R2: statistics['R2'],
                   self.CV_MSDR: statistics['MSDR'], self.N_SAMPLES: len(samples)}
        if variance_path:
            name_output_layer(context, variance_path, f'Kriging variance of {label}', styles.variance())
            results[self.OUTPUT_VARIANCE] = variance_path
        sink_id = self.write_cv(parameters, context, cv, samples, grid)
        if sink_id is not None:
            name_output_layer(context, sink_id, f'Kriging cross-validation of {label} (leave-one-out)')
            results[self.OUTPUT_CV] = sink_id
        html = self.parameterAsFileOutput(parameters, self.OUTPUT_HTML, context)
        if html:
            self.write_report(html, label, samples, notes, grid, summary, fit, cv, statistics,
                              settings['weighting'])
            results[self.OUTPUT_HTML] = html
        return results

    def grid_sources(self, parameters, context):
        """(reference Grid or None, its parameter key, drift raster paths); the first drift raster is the
        reference when REFERENCE_RASTER is empty."""
        drift_paths = []
        for layer in self.parameterAsLayerList(parameters, self.DRIFT_RASTERS, context):
            if layer.providerType() != 'gdal':
                raise QgsProcessingException(f'{self.DRIFT_RASTERS}: "{layer.name()}" is not a GDAL raster; '
                                             'save it as a GeoTIFF first.')
            drift_paths.append(layer.source().split('|')[0])
        if self.parameterAsRasterLayer(parameters, self.REFERENCE_RASTER, context) is not None:
            path = raster_path(self, parameters, self.REFERENCE_RASTER, context)
            return raster_info(path, self.REFERENCE_RASTER).grid, self.REFERENCE_RASTER, drift_paths
        if drift_paths:
            return raster_info(drift_paths[0], self.DRIFT_RASTERS).grid, self.DRIFT_RASTERS, drift_paths
        return None, None, drift_paths

    def output_grid(self, parameters, context, points, reference):
        if len(points) == 0:
            raise QgsProcessingException(
                f'{INPUT}: the layer has no usable samples ({points.skipped_text()}).')
        extent = self.parameterAsEnum(parameters, self.GRID_EXTENT, context)
        if extent != SAMPLES_EXTENT and reference is None:
            raise QgsProcessingException(f'{self.GRID_EXTENT}: "{GRID_EXTENTS[extent]}" needs a '
                                         f'{self.REFERENCE_RASTER}; choose one or the samples\' extent.')
        if extent == WHOLE_REFERENCE:
            return reference
        margin = self.parameterAsDouble(parameters, self.MARGIN, context)
        pixel_size = self.parameterAsDouble(parameters, self.PIXEL_SIZE, context)
        crs_wkt = ''
        if reference is None:
            source = self.parameterAsSource(parameters, INPUT, context)
            crs_wkt = source.sourceCrs().toWkt(compat.WKT_PREFERRED_GDAL)
            if not pixel_size > 0:
                longer = max(np.ptp(points.x), np.ptp(points.y)) + 2 * margin
                pixel_size = longer / AUTO_PIXELS if longer > 0 else 1.0
        grid = samples_grid(points.x, points.y, margin, reference, pixel_size, crs_wkt)
        if extent == SAMPLES_IN_REFERENCE:
            grid = window_within(grid, reference)
            if grid is None:
                raise QgsProcessingException(
                    f'{INPUT}: the samples\' extent plus the {self.MARGIN} does not reach the '
                    f'{self.REFERENCE_RASTER} (extent {reference.extent}); choose the samples and the raster '
                    'of one area, or a larger margin.')
        return grid

    def check_outputs_fit(self, parameters, context, grid, reference):
        """Refuse, before any work, a grid too large to krige or to store on the output disk."""
        if reference is None:
            check_grid_size(grid, self.PIXEL_SIZE, f'set {self.PIXEL_SIZE} to it.')
        else:
            check_grid_size(grid, self.GRID_EXTENT, f'choose the samples\' extent ({self.GRID_EXTENT}), a '
                            f'smaller {self.MARGIN} or a coarser {self.REFERENCE_RASTER}.')
        for key in (self.OUTPUT, self.OUTPUT_VARIANCE):
            path = self.parameterAsOutputLayer(parameters, key, context)
            if path:
                check_free_space(Path(path).parent, raster_bytes(grid), key)

    def variogram(self, parameters, context, feedback, settings, samples, n_neighbours, radius, cancel):
        sill = self.parameterAsDouble(parameters, self.SILL, context)
        range_ = self.parameterAsDouble(parameters, self.RANGE, context)
        if (sill > 0) != (range_ > 0):
            missing = self.SILL if sill <= 0 else self.RANGE
            raise QgsProcessingException(f'{missing}: a given variogram needs both SILL and RANGE > 0 '
                                         '(set both to 0 to fit the variogram).')
        if sill <= 0:
            return fit_for_samples(samples, n_neighbours=n_neighbours, radius=radius, cancel=cancel,
                                   **settings)
        if settings['model_name'] == 'auto':
            raise QgsProcessingException(f'{VARIOGRAM_MODEL}: choose the model that the given SILL and RANGE '
                                         'belong to (not "auto").')
        nugget = self.parameterAsDouble(parameters, self.NUGGET, context)
        exponent = self.parameterAsDouble(parameters, self.POWER_EXPONENT, context)
        model = VariogramModel(settings['model_name'], nugget, sill, range_, exponent,
                               settings['error_variance'])
        diagonal = float(np.hypot(np.ptp(samples.x), np.ptp(samples.y)))
        if not diagonal / 1e4 <= range_ <= diagonal * 1e3:
            feedback.pushWarning(f'{self.RANGE} {range_:g} is far from the scale of the samples (extent '
                                 f'diagonal {diagonal:.4g} map units): check that it is in map units.')
        experimental = experimental_variogram(samples.x, samples.y, variogram_values(samples),
                                              settings['n_lags'], settings['max_distance'], cancel)
        return VariogramFit(experimental, model, None, bool(samples.drift.shape[1]), given=True)

    def write_cv(self, parameters, context, cv, samples, grid):
        fields = QgsFields()
        for name, kind in CV_FIELDS:
            fields.append(QgsField(name, kind))
        crs = QgsCoordinateReferenceSystem.fromWkt(grid.crs_wkt)
        sink, sink_id = self.parameterAsSink(parameters, self.OUTPUT_CV, context, fields,
                                             QgsWkbTypes.Type.Point, crs)
        if sink is None:
            return None
        columns = (samples.x, samples.y, cv.observed, cv.predicted, cv.variance, cv.residual, cv.zscore)
        for row in zip(*columns):
            feature = QgsFeature(fields)
            feature.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(row[0], row[1])))
            feature.setAttributes([float(value) for value in row])
            sink.addFeature(feature, QgsFeatureSink.Flag.FastInsert)
        del sink  # closes the layer before QGIS loads it
        return sink_id

    def write_report(self, path, label, samples, notes, grid, summary, fit, cv, statistics, weighting):
        x0, dx, _, y0, _, dy = grid.geotransform
        kind = 'universal Kriging with external drift' if fit.on_residuals else 'ordinary Kriging'
        block = {0: 'all samples (global)', 1: 'per pixel'}.get(
            summary.block_pixels, f'shared by {summary.block_pixels}² pixel blocks')
        grid_rows = [('method', kind), ('samples used', len(samples)), ('skipped / merged', notes or 'none'),
                     ('grid size (columns x rows)', f'{grid.width} x {grid.height}'),
                     ('pixel size', f'{dx:g} x {abs(dy):g}'), ('upper-left corner', f'{x0:.6g}, {y0:.6g}'),
                     ('neighbourhood', block), ('pixels without prediction', summary.nodata_pixels)]
        curves = [(f'{fit.model.name} (used)', fit.model)]
        sections = [
            ('Summary', page.table_html(['item', 'value'], grid_rows)),
            ('Variogram', kriging_report.variogram_figure(fit.experimental, curves)
             + kriging_report.fit_note(fit.experimental, None if fit.given else weighting, fit.on_residuals)
             + kriging_report.bound_warnings_html(fit.warnings)
             + kriging_report.model_table(fit.model)),
        ]
        if fit.candidates:
            sections.append(('Model choice', kriging_report.candidates_table(fit.candidates, fit.model)))
        sections.append(('Leave-one-out cross-validation', kriging_report.statistics_table(statistics)
                         + kriging_report.cross_validation_figure(cv)))
        sections.append(('Units', page.paragraph(
            f'Predictions are in units of {label}, variances in those units squared (not back-transformed).',
            'note')))
        page.write_report(path, f'Kriging of {label}', sections)
