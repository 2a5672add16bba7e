"""Processing glue: apply an ONNX inversion model to every pixel of a raster (core/inversion/inference.py)."""
import os

from qgis.core import (
    QgsProcessingParameterBand,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
)

from ..core.distributed import steps
from ..core.errors import InputError
from ..core.inversion.inference import apply_model
from ..core.raster.blockio import raster_info
from .glue.base import PLUGIN_DIR, RsGeochemAlgorithm, name_output_layer, progress_callbacks, raster_path
from .glue.cluster import cluster_run
from .glue.mask_input import add_mask_parameter, mask_reader

DEFAULT_MODEL = PLUGIN_DIR / 'models' / 're2o3_cnn_gf2.onnx'


class ApplyInversionModelAlgorithm(RsGeochemAlgorithm):
    ALGORITHM_ID = 'applyinversionmodel'
    DISPLAY_NAME = 'Apply inversion model to a raster'
    GROUP_ID = 'inversion'
    RUNS_ON_CLUSTER = True
    REQUIRES = ('onnxruntime', 'onnx')
    TAGS = ('onnx', 'onnxruntime', 'cnn', 'inversion', 'prediction', 'map', 'regression')
    HELP = (
        'Maps element content over a whole image with a trained regression model: every pixel\'s '
        'band values go through an ONNX model (e.g. written by "Train inversion model": the CNN of '
        'Cheng et al. 2023, rare-earth inversion from GF-2, or the MLR / PLSR / random forest '
        'baselines), and the prediction is written to a float32 GeoTIFF in the target\'s units.\n'
        'Models: any ONNX model with one float32 input and one output per pixel (shape (N, 1) or '
        '(N,)), raw band values in (any scaling is part of the model). Input layouts: per pixel '
        '(N, bands); tiled (N, 1, S, S), band values repeated row-major in a square whose side S is '
        'the smallest multiple of 4 holding every band (the paper\'s 4x4 for up to 16 bands, 8x8 for '
        '17-64, 16x16 for 145-256); '
        'patch (N, bands, k, k), the k x k neighbourhood of the pixel (k odd).\n'
        'Band order: a model from "Train inversion model" names its features in its metadata; they '
        'are found among the raster\'s band descriptions (case-insensitive, in any band order). A '
        'raster without band descriptions is used in band order when it has as many bands as the '
        'model has features. Otherwise, and for models without metadata, give the band numbers '
        'feeding the model, in its input order, in Bands.\n'
        'Nodata: a pixel where any used band is nodata or not finite, where the mask is 0 or nodata, '
        'or (patch models) whose k x k neighbourhood holds such a pixel or crosses the raster edge '
        'is written as nodata (-9999).\n'
        'The raster is processed in blocks of rows sized from the block memory budget (a quarter '
        'of it for the model\'s batches of pixels), so memory does not grow with the image size; '
        'the next block is read while the model runs.')

    INPUT = 'INPUT'
    MODEL = 'MODEL'
    BANDS = 'BANDS'
    MASK = 'MASK'
    THREADS = 'THREADS'
    OUTPUT = 'OUTPUT'
    OUTPUT_OUT_OF_RANGE = 'OUTPUT_OUT_OF_RANGE'

    def initAlgorithm(self, config=None):
        self.add(QgsProcessingParameterRasterLayer(self.INPUT, self.tr('Image')),
                 'Multiband image with the bands the model was trained on (same corrections, e.g. '
                 'surface reflectance), read by GDAL.')
        self.add(QgsProcessingParameterFile(
            # optional so the default also applies from qgis_process 3.22, which refuses a missing
            # required parameter even when it has a default
            self.MODEL, self.tr('ONNX model'), QgsProcessingParameterFile.Behavior.File, 'onnx',
            str(DEFAULT_MODEL), optional=True),
            'Regression model in ONNX format (.onnx), e.g. the output of "Train inversion model". '
            'Default: the shipped paper-style CNN for RE2O3 % trained on the simulated GF-2-like sample '
            'data (models/re2o3_cnn_gf2.onnx; features: blue, green, red, nir surface reflectance) - '
            'a demonstration model: train your own on your samples.')
        self.add(QgsProcessingParameterBand(
            self.BANDS, self.tr('Bands feeding the model, in its input order'), None, self.INPUT,
            optional=True, allowMultiple=True),
            'Raster band numbers in the order of the model\'s inputs (qgis_process: BANDS=3;2;1). '
            'Empty: taken from the model\'s metadata and the band descriptions. Needed for models '
            'without metadata.')
        add_mask_parameter(self, self.MASK)
        self.add(QgsProcessingParameterNumber(
            self.THREADS, self.tr('onnxruntime threads'), QgsProcessingParameterNumber.Type.Integer, 2,
            False, 1, 256),
            'Threads onnxruntime uses to run the model (intra-op threads); at most the number of CPU '
            'cores.', advanced=True)
        self.add_block_memory()
        self.add(QgsProcessingParameterRasterDestination(self.OUTPUT, self.tr('Predicted content')),
                 'Float32 GeoTIFF (.tif) of the predictions in the target\'s units, on the image grid, '
                 'nodata -9999.')
        self.add(QgsProcessingParameterRasterDestination(
            self.OUTPUT_OUT_OF_RANGE, self.tr('Pixels outside the training range'), optional=True,
            createByDefault=False),
            'Optional byte GeoTIFF: 1 where a band value lies outside what the model was fitted on (its '
            'training range plus 10 %, or 4 standard deviations from the training mean for models that '
            'only store their standardisation), 0 inside, 255 nodata. Predictions flagged 1 are '
            'extrapolations. The log counts them in any case.')

    def execute(self, parameters, context, feedback):
        input_path = raster_path(self, parameters, self.INPUT, context)
        mask = mask_reader(self, parameters, self.MASK, context, raster_info(input_path, self.INPUT).grid,
                           feedback)
        output = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        flags = self.parameterAsOutputLayer(parameters, self.OUTPUT_OUT_OF_RANGE, context) or None
        bands = self.parameterAsInts(parameters, self.BANDS, context)
        if 0 in bands:  # what QGIS makes of a list it cannot parse, e.g. "3,2,1"
            raise InputError('give band numbers from 1 up, separated by ";" (e.g. 3;2;1).', self.BANDS)
        progress, cancel = progress_callbacks(feedback)
        model_path = self.parameterAsFile(parameters, self.MODEL, context) or str(DEFAULT_MODEL)
        memory_mb = self.block_memory(parameters, context)
        run = cluster_run(feedback, progress, cancel)
        if run is not None:
            result = steps.infer(run, input_path, model_path, output, bands, mask and mask.info.path,
                                 memory_mb)
            if flags:
                feedback.pushWarning(f'{self.OUTPUT_OUT_OF_RANGE} is not written on a Dask cluster; run '
                                     'without the scheduler for it.')
                flags = None
        else:
            result = apply_model(
                input_path, model_path, output, bands=bands, mask_path=mask and mask.info.path,
                threads=self.parameterAsInt(parameters, self.THREADS, context),
                memory_mb=memory_mb, progress=progress, cancel=cancel, flags_path=flags)
        for note in result.notes:
            feedback.pushWarning(note)
        feedback.pushInfo(f'Layout {result.layout}; bands {", ".join(map(str, result.bands))} feed the '
                          f'model. {result.predicted} pixels predicted, {result.nodata} nodata; '
                          f'{result.blocks} blocks, batches of up to {result.batch} pixels.')
        name_output_layer(context, output, 'Predicted content' if result.target == 'prediction'
                          else f'Predicted {result.target}')
        outputs = {self.OUTPUT: output}
        if flags and os.path.exists(flags):
            name_output_layer(context, flags, 'Pixels outside the training range')
            outputs[self.OUTPUT_OUT_OF_RANGE] = flags
        elif flags:
            feedback.pushWarning(f'{self.OUTPUT_OUT_OF_RANGE}: the model carries no training range or '
                                 'standardisation in its metadata, so pixels cannot be flagged; not written.')
        return outputs
