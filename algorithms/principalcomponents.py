"""Principal component analysis of image bands with loadings and explained variance."""
import numpy as np
from qgis.core import (
    QgsProcessingParameterBand,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
)

from ..core.errors import InputError
from ..core.imagery import pca
from ..core.imagery.mask import read_mask_block
from ..core.raster.blockio import RasterWriter, raster_info, read_blocks
from ..core.report.page import write_report
from .glue import compat, styles
from .glue.base import RsGeochemAlgorithm, name_output_layer, progress_callbacks, raster_path
from .glue.mask_input import add_mask_parameter, mask_reader
from .glue.tables import field_names, table_fields, write_table


class PrincipalComponentsAlgorithm(RsGeochemAlgorithm):
    INPUT = 'INPUT'
    BANDS = 'BANDS'
    MASK = 'MASK'
    STANDARDIZE = 'STANDARDIZE'
    COMPONENTS = 'COMPONENTS'
    VARIANCE_TARGET = 'VARIANCE_TARGET'
    MAX_SAMPLES = 'MAX_SAMPLES'
    SEED = 'SEED'
    OUTPUT = 'OUTPUT'
    OUTPUT_TABLE = 'OUTPUT_TABLE'
    OUTPUT_HTML = 'OUTPUT_HTML'

    ALGORITHM_ID = 'principalcomponents'
    DISPLAY_NAME = 'Principal components (PCA)'
    GROUP_ID = 'imagecorrection'
    TAGS = ('PCA', 'principal component', 'Crosta', 'feature-oriented', 'loadings', 'eigenvector')
    HELP = (
        'Principal component analysis of the bands of an image: new bands (PC1, PC2, ...) that concentrate '
        'its variance, with their loadings, so that a component carrying a mineral or alteration signal '
        'can be picked.\n'
        'Use it to make the predictor of "Laplacian pyramid fusion" (the paper used PC2) or a '
        'feature-oriented component (Crosta & Moore 1989: iron oxides, clays). Give the Multispectral '
        'raster and, optionally, the Bands and a Mask (e.g. from "Surface mask") to leave water and '
        'vegetation out of the fit. Tick Standardise bands when the bands differ much in brightness.\n'
        'Outputs: the components (loaded as a PC1/PC2/PC3 colour composite), a table and an HTML report '
        'with each component\'s eigenvalue, % and cumulative % of variance and the coefficient of each band '
        '(signs are arbitrary; each component\'s largest coefficient is made positive).\n'
        'Method details. Covariance PCA by default, correlation PCA with Standardise bands (Richards & '
        'Jia, Remote Sensing Digital Image Analysis, ch. 6); eigen-decomposition of the bands × bands '
        'matrix (numpy.linalg.eigh: exact, deterministic). Fitted on a uniform random sample of the valid '
        'pixels (all when fewer than Maximum pixels for the fit); pixels with nodata in any band or masked '
        'are left out. Keeps the Number of components, or when that is 0 the fewest whose cumulative '
        'explained variance reaches the Variance target. Scores are written block by block as float32 '
        '(nodata -9999 where a band is nodata or the mask excludes the pixel).')

    def initAlgorithm(self, config=None):
        self.add(QgsProcessingParameterRasterLayer(self.INPUT, self.tr('Multispectral raster')),
                 'Multiband raster (reflectance or index bands). Nodata values are respected.')
        self.add(QgsProcessingParameterBand(self.BANDS, self.tr('Bands'), None, self.INPUT, optional=True,
                                            allowMultiple=True),
                 'Bands to analyse, in this order (at least two). Empty: every band.')
        add_mask_parameter(self)
        self.add(QgsProcessingParameterBoolean(self.STANDARDIZE, self.tr('Standardise bands'), False),
                 'Divide each band by its standard deviation (correlation-matrix PCA). Use it when bands '
                 'have different units or ranges (e.g. mixing indices and reflectance).')
        self.add(QgsProcessingParameterNumber(self.COMPONENTS, self.tr('Number of components (0 = use the '
                                                                       'variance target)'),
                                              QgsProcessingParameterNumber.Type.Integer, 0, False, 0, 1000),
                 'Components written to the output raster. 0: decided by the Variance target.')
        self.add(QgsProcessingParameterNumber(self.VARIANCE_TARGET, self.tr('Variance target (%)'),
                                              QgsProcessingParameterNumber.Type.Double, 100.0, False, 1.0,
                                              100.0),
                 'With 0 components asked: keep the fewest components whose cumulative explained variance '
                 'reaches this percentage (100 keeps all).')
        self.add(QgsProcessingParameterNumber(self.MAX_SAMPLES, self.tr('Maximum pixels for the fit'),
                                              QgsProcessingParameterNumber.Type.Integer, 200000, False, 100,
                                              10 ** 8),
                 'Size of the uniform random sample of valid pixels the PCA is fitted on (every valid '
                 'pixel when there are fewer). 200,000 pins the covariance to well under 1%.', advanced=True)
        self.add(QgsProcessingParameterNumber(self.SEED, self.tr('Random seed'),
                                              QgsProcessingParameterNumber.Type.Integer, 1, False, 0),
                 'Seed of the pixel sample, for repeatable results.', advanced=True)
        self.add(QgsProcessingParameterRasterDestination(self.OUTPUT, self.tr('Principal components')),
                 'Float32 GeoTIFF of component scores, bands described PC1, PC2, ...')
        self.add(QgsProcessingParameterFeatureSink(
            self.OUTPUT_TABLE, self.tr('Loadings and explained variance'), compat.SOURCE_TABLE,
            optional=True, createByDefault=True),
                 'Table without geometry: one row per component with eigenvalue, variance %, cumulative %, '
                 'in_output and the eigenvector coefficient of each band. Created by default in the '
                 'dialog; with qgis_process give a file name, e.g. OUTPUT_TABLE=loadings.csv.')
        self.add(QgsProcessingParameterFileDestination(self.OUTPUT_HTML, self.tr('PCA report'),
                                                       'HTML files (*.html)', optional=True,
                                                       createByDefault=True),
                 'HTML report: explained variance table and scree plot, coefficient map and a line per '
                 'component naming the bands it weighs most (with qgis_process: give a file name).')
        self.add_block_memory()

    def execute(self, parameters, context, feedback):
        path = raster_path(self, parameters, self.INPUT, context)
        info = raster_info(path, self.INPUT)
        bands = self.parameterAsInts(parameters, self.BANDS, context) or list(range(1, info.band_count + 1))
        if len(bands) < 2:
            raise InputError('choose at least two bands for a PCA.', self.BANDS)
        if len(set(bands)) != len(bands):
            raise InputError('a band is selected twice; a repeated band adds no information and makes '
                             'the covariance singular: select each band once.', self.BANDS)
        names = [info.descriptions[b - 1] or f'band {b}' for b in bands]
        mask = mask_reader(self, parameters, self.MASK, context, info.grid, feedback)
        memory = self.block_memory(parameters, context)
        progress, cancel = progress_callbacks(feedback, 0, 45)

        def valid_blocks(progress):
            # pixel vectors, centred/scaled copy, scores, masked score block and the writer's two
            # float64 copies: about 60 bytes per band and pixel on top of the read
            for window, block in read_blocks(path, bands, memory, extra_bytes_per_pixel=60 * len(bands) + 2,
                                             cancel=cancel, progress=progress, parameter=self.INPUT):
                valid = ~np.ma.getmaskarray(block).any(axis=0)
                if mask is not None:
                    valid &= read_mask_block(mask, window)
                yield window, block.data, valid

        sampler = pca.PixelSampler(self.parameterAsInt(parameters, self.MAX_SAMPLES, context),
                                   self.parameterAsInt(parameters, self.SEED, context))
        for _, data, valid in valid_blocks(progress):
            sampler.add(data[:, valid].T)
        standardize = self.parameterAsBool(parameters, self.STANDARDIZE, context)
        model = pca.fit_pca(sampler.sample(), standardize, self.INPUT, names)
        kept = pca.component_count(model.explained_ratio,
                                   self.parameterAsInt(parameters, self.COMPONENTS, context),
                                   self.parameterAsDouble(parameters, self.VARIANCE_TARGET, context) / 100,
                                   self.COMPONENTS)
        kind = 'correlation' if standardize else 'covariance'
        settings = (f'{len(bands)} bands ({", ".join(names)}); {kind} PCA fitted on {model.n_samples} of '
                    f'{sampler.seen} valid pixels'
                    f'{" (mask applied)" if mask is not None else ""}; {kept} components written.')
        feedback.pushInfo(settings)
        for row in pca.table_rows(model, names, kept)[:kept]:
            feedback.pushInfo(f'{row[0]}: {row[2]:.2f}% of variance (cumulative {row[3]:.2f}%)')

        output = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        progress, _ = progress_callbacks(feedback, 50, 100)
        descriptions = [f'PC{i + 1}' for i in range(kept)]
        with RasterWriter(output, info.grid, kept, descriptions=descriptions) as writer:
            for window, data, valid in valid_blocks(progress):
                scores = np.ma.masked_all((kept, window.rows, info.grid.width))
                scores[:, valid] = model.transform(data[:, valid].T, kept).T
                writer.write(window.row, scores)
        name_output_layer(context, output, f'Principal components (PC1-PC{kept})' if kept > 1 else
                          'Principal component PC1', styles.rgb(1, 2, 3) if kept >= 3 else styles.diverging())
        results = {self.OUTPUT: output}
        results.update(self.write_table(parameters, context, model, names, kept))
        html = self.parameterAsFileOutput(parameters, self.OUTPUT_HTML, context)
        if html:
            results[self.OUTPUT_HTML] = write_report(html, 'Principal components',
                                                     pca.report_sections(model, names, kept, settings))
        return results

    def write_table(self, parameters, context, model, names, kept):
        columns = [('component', compat.FIELD_STRING), ('eigenvalue', compat.FIELD_DOUBLE),
                   ('variance_pct', compat.FIELD_DOUBLE), ('cumulative_pct', compat.FIELD_DOUBLE),
                   ('in_output', compat.FIELD_BOOL)]
        columns += [(name, compat.FIELD_DOUBLE) for name in field_names(names, [name for name, _ in columns])]
        return write_table(self, parameters, self.OUTPUT_TABLE, context, table_fields(columns),
                           pca.table_rows(model, names, kept), 'PCA loadings and explained variance')
