"""Processing glue of the Laplacian-pyramid regression fusion (core.fusion)."""
from qgis.core import (
    QgsProcessingOutputNumber,
    QgsProcessingParameterBand,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
)

from ..core.fusion.model import ESTIMATORS
from ..core.fusion.pipeline import MODES, FusionSettings, fuse
from ..core.fusion.report import regression_rows, write_fusion_report
from .glue import compat, styles
from .glue.base import RsGeochemAlgorithm, name_output_layer, progress_callbacks, raster_path
from .glue.tables import field_names, table_fields, write_table


class LaplacianFusionAlgorithm(RsGeochemAlgorithm):
    ALGORITHM_ID = 'laplacianfusion'
    DISPLAY_NAME = 'Laplacian pyramid fusion (grid + image)'
    GROUP_ID = 'fusion'
    TAGS = ('fusion', 'downscaling', 'Laplacian pyramid', 'regression', 'K-means', 'geochemistry',
            'pansharpening', 'coherent')
    REQUIRES = ()
    HELP = (
        'Sharpens a coarse geochemical grid (e.g. a 1:200,000 survey kriged at 500 m to 1 km) with a fine '
        'image, giving a content map at the image\'s resolution, after Remote Sens. 2023, 15, 1993 (Cu, '
        '1:200,000 to 1:50,000).\n'
        'Use it when the survey is coarse but an image (or its principal components, or mineral indices) '
        'carries the fine detail of the geology. Give the Coarse geochemical grid (e.g. from "Kriging"), '
        'the Fine image and the Image bands to use (e.g. PC2 from "Principal components", as in the '
        'paper); optionally a Mask, Bands for the K-means clusters (e.g. alteration indices, when K-means '
        'clusters is above 1) and a finer Reference layer to check the result. The defaults keep the '
        'measured grid and add the image\'s detail (Mode "Coherent", Regression "Nonlinear"); choose Mode '
        '"Paper", Regression "Least squares" and 0 Residual correction iterations to reproduce the '
        'article.\n'
        'Outputs: the fused map on the image grid (loaded with a colour ramp), the clusters (local mode), '
        'a table of the regression coefficients and R² per cluster (cluster 0 = global), and an HTML '
        'report (coherence error, reference correlation, maps of input, fused and difference).\n'
        'Method details. The grid is resampled to the image grid by cubic convolution (GDAL); grid and '
        'image bands are split into low and high frequencies by an undecimated Laplacian pyramid (Burt & '
        'Adelson 1983 kernel, levels from the resolution ratio); the grid\'s low frequency is regressed on '
        'the bands\' low frequency, globally or per K-means cluster of the image (local mode, '
        'scikit-learn). Paper mode: fused = (a0 + a × image low) + (grid high + a × image high); the '
        'article\'s Eq. 2 also adds the constant a0 to the high frequency, which summed with the low '
        'frequency (its Eq. 3) would count a0 twice and shift the map by a0, so a0 is left out there: '
        'fused = a0 + a × image + grid high. Coherent mode: fused = grid + a × image high. Regression: '
        'least squares (the paper); a ridge regression whose penalty is the image noise (Bishop 1995: '
        'least squares on noisy inputs equals ridge; noise per band from the median absolute deviation of '
        'the finest detail, Donoho & Johnstone 1994), which keeps strongly correlated bands from giving '
        'large opposite-sign slopes that amplify noise; or (default, ours) a nonlinear regression F(image) '
        'on quadratic terms and per-band hinges of the bands, ridge-fitted so that the features averaged '
        'over each coarse cell (or smoothed by the pyramid when the grids are not aligned) predict the '
        'grid: it follows nonlinear band-content relations and mixed pixels, where pyDMS (Gao et al. 2012) '
        'uses regression trees fitted on cell means. In coherent mode F is by default averaged with a '
        'local regression (Blend in a local regression: geographically weighted, Fotheringham et al. '
        '2002), so the relation may change across the map as with pyDMS\'s moving windows. With it, '
        'coherent mode writes F and puts the grid '
        'back by residual correction (at least one pass); paper mode gives F + grid high. It learns from '
        'the coarse cells: with fewer than 20 cells inside the image per feature (B + B(B+1)/2 + 5B '
        'features for B bands: 140 for one band, 480 for three) the noise ridge is used instead and the '
        'log says so. Residual correction (as in pyDMS) averages the fused map back onto the coarse cells '
        'and adds the cubic-resampled residual, so the result reproduces the input grid when averaged. '
        'Accuracy (Wald protocol, a band block-averaged 4× and fused back, RMSE in DN; make bench): '
        'Sentinel-2 B4 from B2, B3, B8 at 10 m: cubic resampling 149, paper configuration (paper mode, '
        'least squares) 113, noise ridge with one residual pass 61, nonlinear without the local '
        'regression 52, the defaults 46.5, pyDMS 59-64, Orfeo ToolBox Pansharpening rcs 67; Landsat 5 TM '
        'B7 from B1-B5 at 30 m: cubic 2.41, paper 1.56, noise ridge 1.13, nonlinear without the local '
        'regression 1.01, defaults 0.97, pyDMS 1.03-1.05, OTB rcs 1.55. K-means clusters (4) did not '
        'improve the defaults there. Works tile by tile: memory does not grow with the raster size (the '
        'local regression\'s fit is bounded by the Block memory).')

    INPUT_GEOCHEM = 'INPUT_GEOCHEM'
    GEOCHEM_BAND = 'GEOCHEM_BAND'
    INPUT_IMAGE = 'INPUT_IMAGE'
    BANDS = 'BANDS'
    MASK = 'MASK'
    MODE = 'MODE'
    REGRESSION = 'REGRESSION'
    CLUSTERS = 'CLUSTERS'
    LEVELS = 'LEVELS'
    RESIDUAL_ITERATIONS = 'RESIDUAL_ITERATIONS'
    REFERENCE = 'REFERENCE'
    REFERENCE_BAND = 'REFERENCE_BAND'
    MIN_CLUSTER_PIXELS = 'MIN_CLUSTER_PIXELS'
    SAMPLE_SIZE = 'SAMPLE_SIZE'
    SEED = 'SEED'
    OUTPUT = 'OUTPUT'
    OUTPUT_CLUSTERS = 'OUTPUT_CLUSTERS'
    OUTPUT_TABLE = 'OUTPUT_TABLE'
    OUTPUT_HTML = 'OUTPUT_HTML'
    COHERENCE_RMSE = 'COHERENCE_RMSE'
    REFERENCE_R = 'REFERENCE_R'
    REFERENCE_R_CUBIC = 'REFERENCE_R_CUBIC'
    CLUSTER_BANDS = 'CLUSTER_BANDS'
    LOCAL_REGRESSION = 'LOCAL_REGRESSION'

    MODE_LABELS = ('Paper: fused = regressed low frequency + injected high frequency',
                   'Coherent: fused = measured grid + injected image detail')
    REGRESSION_LABELS = ('Least squares (paper)', 'Ridge, penalty = image noise (noise-aware)',
                         'Nonlinear: quadratic and hinge features fitted on cell averages')

    def initAlgorithm(self, config=None):  # noqa: N802 - QGIS API
        integer = QgsProcessingParameterNumber.Type.Integer
        self.add(QgsProcessingParameterRasterLayer(self.INPUT_GEOCHEM, self.tr('Coarse geochemical grid')),
                 'Coarse raster of element content (e.g. kriged 1:200,000 survey). Any CRS: it is '
                 'reprojected to the image CRS when needed. Must be coarser than the image.')
        self.add(QgsProcessingParameterBand(self.GEOCHEM_BAND, self.tr('Grid band'), 1, self.INPUT_GEOCHEM,
                                            optional=True),
                 'Band of the grid holding the element content (default 1).')
        self.add(QgsProcessingParameterRasterLayer(self.INPUT_IMAGE, self.tr('Fine image')),
                 'Multiband image defining the output grid: reflectance bands, principal components '
                 'or mineral/alteration indices.')
        self.add(QgsProcessingParameterBand(self.BANDS, self.tr('Image bands'), None, self.INPUT_IMAGE,
                                            optional=True, allowMultiple=True),
                 'Bands used as predictors (empty = all). Collinear bands make the regression singular '
                 'and are refused.')
        self.add(QgsProcessingParameterRasterLayer(self.MASK, self.tr('Mask (1 keep, 0 masked)'),
                                                   optional=True),
                 'Optional raster on the image grid; pixels with 0 or nodata are left out of the fit '
                 'and written as nodata (e.g. from "surfacemask").')
        self.add(QgsProcessingParameterEnum(self.MODE, self.tr('Mode'), self.MODE_LABELS, defaultValue=1),
                 'Paper: the article\'s formula, low frequency replaced by the regression. Coherent '
                 '(default since it is more accurate at the same cost): the measured grid is kept and only '
                 'image detail is added.')
        self.add(QgsProcessingParameterEnum(self.REGRESSION, self.tr('Regression'), self.REGRESSION_LABELS,
                                            defaultValue=2),
                 'Least squares: the article\'s regression. Noise-aware ridge: slopes shrunk by each '
                 'band\'s noise variance, estimated from the image itself; stable with correlated bands '
                 '(e.g. blue and green) where least squares amplifies noise. Nonlinear (default): the '
                 'content of each pixel predicted from quadratic and hinge features of the bands, the '
                 'most accurate on our Wald benchmarks (see above).')
        self.add(QgsProcessingParameterNumber(self.CLUSTERS, self.tr('K-means clusters (1 = global)'),
                                              integer, 1, False, 1, 50),
                 '1: one global regression. 2 or more: the paper\'s local mode, one regression per K-means '
                 'cluster of the image bands (scikit-learn); a cluster with too few pixels or collinear '
                 'bands uses the global regression (reported). With the nonlinear regression clusters '
                 'did not improve accuracy on our benchmarks and cost several times the run time: use '
                 'them to follow the paper or where geological units relate differently to the bands.')
        self.add(QgsProcessingParameterNumber(
            self.LEVELS, self.tr('Pyramid levels (0 = from resolution ratio)'), integer, 0, False, 0, 8),
                 'Levels of the Laplacian pyramid; 0 picks round(log2(coarse/fine pixel size)). Each '
                 'level doubles the smoothing scale.', advanced=True)
        self.add(QgsProcessingParameterNumber(
            self.RESIDUAL_ITERATIONS, self.tr('Residual correction iterations'), integer, 1, False, 0, 10),
                 'Passes of residual correction (as in pyDMS): average the fused map onto the coarse '
                 'cells, resample the residual by cubic convolution and add it, so the result reproduces '
                 'the input grid. The nonlinear regression in coherent mode always makes at least one; '
                 'more passes change its accuracy little, each reads and writes the raster once more.')
        self.add(QgsProcessingParameterRasterLayer(self.REFERENCE, self.tr('Reference layer (check only)'),
                                                   optional=True),
                 'Optional raster to compare with, e.g. a finer survey (1:50,000). The fused map and the '
                 'cubic-resampled grid are averaged onto its grid and their correlation reported.')
        self.add(QgsProcessingParameterBand(self.REFERENCE_BAND, self.tr('Reference band'), 1, self.REFERENCE,
                                            optional=True),
                 'Band of the reference layer (default 1).')
        self.add(QgsProcessingParameterNumber(
            self.MIN_CLUSTER_PIXELS, self.tr('Minimum sampled pixels per cluster'), integer, 100, False, 10,
            1_000_000),
                 'A cluster with fewer sampled pixels (or fewer than 10 per coefficient) uses the global '
                 'regression.', advanced=True)
        self.add(QgsProcessingParameterNumber(self.SAMPLE_SIZE, self.tr('Fit sample size (pixels)'),
                                              integer, 200_000, False, 1000, 10_000_000),
                 'Pixels sampled on evenly spaced row strips to fit K-means and the regressions.',
                 advanced=True)
        self.add(QgsProcessingParameterNumber(
            self.SEED, self.tr('Random seed'), integer, 1, False, 0, 2 ** 31 - 1),
                 'Seed of the pixel sample and of K-means, for repeatable results.', advanced=True)
        self.add_block_memory()
        self.add(QgsProcessingParameterRasterDestination(self.OUTPUT, self.tr('Fused grid')),
                 'Fused element content on the image grid (float32 GeoTIFF, grid units).')
        self.add(QgsProcessingParameterRasterDestination(self.OUTPUT_CLUSTERS, self.tr('Clusters'),
                                                         optional=True, createByDefault=False),
                 'Cluster number (1..N) of each pixel; all 1 in global mode.')
        self.add(QgsProcessingParameterFeatureSink(self.OUTPUT_TABLE, self.tr('Regression coefficients'),
                                                   compat.SOURCE_TABLE, optional=True),
                 'Table without geometry: cluster (0 = global), pixels, R², intercept, one slope per '
                 'band, status.')
        self.add(QgsProcessingParameterFileDestination(
            self.OUTPUT_HTML, self.tr('Report'), 'HTML files (*.html)', optional=True),
                 'HTML report: settings, regressions, warnings, coherence, reference check, maps.')
        self.add(QgsProcessingParameterBand(self.CLUSTER_BANDS, self.tr('Bands for the K-means clusters'),
                                            None, self.INPUT_IMAGE, optional=True, allowMultiple=True),
                 'Image bands the K-means clusters (2 or more) group pixels by, e.g. alteration indices or '
                 'raw bands that separate geological units as the paper does, while the regression uses '
                 'the Image bands (e.g. PC2). Empty: the regression bands. They should have data wherever '
                 'the Image bands do.')
        self.add(QgsProcessingParameterBoolean(self.LOCAL_REGRESSION,
                                               self.tr('Blend in a local regression (nonlinear, coherent)'),
                                               True),
                 'With the Nonlinear regression in Coherent mode: average its prediction with a '
                 'geographically weighted linear regression of the grid on the bands and their 5×5-smoothed '
                 'values, fitted at every coarse cell on the cells around it, so the band-content relation '
                 'may change across the map (its bandwidth and ridge penalty are chosen by leave-one-out '
                 'cross-validation on the cells; see the log). Off: the global regression alone, as before. '
                 'Its fit must fit in the Block memory: at the default 256 MB, grids of more than about '
                 '2.2 million cells (one band), 1.1 million (two), 640 000 (three) or 420 000 (four) use the '
                 'global regression alone (the log says so); the limit grows with the Block memory.')
        self.addOutput(QgsProcessingOutputNumber(self.COHERENCE_RMSE, self.tr('Coherence RMSE')))
        self.addOutput(QgsProcessingOutputNumber(self.REFERENCE_R, self.tr('Correlation with the reference')))
        self.addOutput(QgsProcessingOutputNumber(self.REFERENCE_R_CUBIC,
                                                 self.tr('Correlation of the cubic grid with the reference')))

    def _settings(self, parameters, context):
        return FusionSettings(
            mode=MODES[self.parameterAsEnum(parameters, self.MODE, context)],
            estimator=ESTIMATORS[self.parameterAsEnum(parameters, self.REGRESSION, context)],
            clusters=self.parameterAsInt(parameters, self.CLUSTERS, context),
            levels=self.parameterAsInt(parameters, self.LEVELS, context),
            residual_iterations=self.parameterAsInt(parameters, self.RESIDUAL_ITERATIONS, context),
            sample_size=self.parameterAsInt(parameters, self.SAMPLE_SIZE, context),
            min_cluster_pixels=self.parameterAsInt(parameters, self.MIN_CLUSTER_PIXELS, context),
            seed=self.parameterAsInt(parameters, self.SEED, context),
            memory_mb=self.block_memory(parameters, context),
            cluster_bands=tuple(self.parameterAsInts(parameters, self.CLUSTER_BANDS, context)),
            local=self.parameterAsBool(parameters, self.LOCAL_REGRESSION, context))

    def _optional_raster(self, parameters, key, context):
        if self.parameterAsRasterLayer(parameters, key, context) is None:
            return None
        return raster_path(self, parameters, key, context)

    def execute(self, parameters, context, feedback):
        settings = self._settings(parameters, context)
        geo_path = raster_path(self, parameters, self.INPUT_GEOCHEM, context)
        image_path = raster_path(self, parameters, self.INPUT_IMAGE, context)
        mask_path = self._optional_raster(parameters, self.MASK, context)
        reference_path = self._optional_raster(parameters, self.REFERENCE, context)
        output = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        clusters_output = self.parameterAsOutputLayer(parameters, self.OUTPUT_CLUSTERS, context) or None
        log_lines = []

        def log(message):
            log_lines.append(message)
            feedback.pushInfo(message)
        progress, cancel = progress_callbacks(feedback, 0, 95)
        result = fuse(geo_path, self.parameterAsInt(parameters, self.GEOCHEM_BAND, context) or 1, image_path,
                      self.parameterAsInts(parameters, self.BANDS, context), output, clusters_output,
                      mask_path, reference_path,
                      self.parameterAsInt(parameters, self.REFERENCE_BAND, context) or 1, settings, log,
                      progress, cancel)
        for warning in result.warnings:
            feedback.reportError(f'Warning: {warning}', fatalError=False)
        outputs = {self.OUTPUT: output, self.COHERENCE_RMSE: result.coherence['rmse'],
                   self.REFERENCE_R: result.reference['fused']['r'] if result.reference else None,
                   self.REFERENCE_R_CUBIC: result.reference['cubic']['r'] if result.reference else None}
        feedback.pushInfo(f'coherence RMSE {result.coherence["rmse"]:.4g} (cubic resampling '
                          f'{result.cubic_coherence["rmse"]:.4g}) grid units')
        if result.reference:
            feedback.pushInfo(f'reference r: fused {result.reference["fused"]["r"]:.4f}, cubic '
                              f'{result.reference["cubic"]["r"]:.4f}')
        grid_layer = self.parameterAsRasterLayer(parameters, self.INPUT_GEOCHEM, context)
        grid_name = styles.layer_label(grid_layer, 'Geochemical grid')
        units = styles.units_in(grid_layer.bandName(1))
        name_output_layer(context, output, f'{grid_name} fused with the image', styles.content(units))
        if clusters_output:
            outputs[self.OUTPUT_CLUSTERS] = clusters_output
            name_output_layer(context, clusters_output, 'Fusion clusters (K-means of the image)',
                              styles.categories('cluster'))
        outputs.update(self._write_table(parameters, context, result.model))
        html = self.parameterAsFileOutput(parameters, self.OUTPUT_HTML, context)
        if html:
            inputs = dict(grid=geo_path, image=image_path, mask=mask_path, reference=reference_path)
            outputs[self.OUTPUT_HTML] = write_fusion_report(html, result, settings, inputs, log_lines)
        feedback.setProgress(100)
        return outputs

    def _write_table(self, parameters, context, model):
        columns = [('cluster', compat.FIELD_INT), ('pixels', compat.FIELD_INT), ('r2', compat.FIELD_DOUBLE),
                   ('intercept', compat.FIELD_DOUBLE)]
        columns += [(name, compat.FIELD_DOUBLE)
                    for name in field_names(model.feature_names, [name for name, _ in columns], prefix='a_')]
        columns.append(('status', compat.FIELD_STRING))
        rows = ([int(row[0]), int(row[1]), *[float(value) for value in row[2:-1]], row[-1]]
                for row in regression_rows(model))
        return write_table(self, parameters, self.OUTPUT_TABLE, context, table_fields(columns), rows,
                           'Fusion regression coefficients')
