"""Processing glue: apply an ONNX inversion model to every pixel of a raster (core/inversion/inference.py)."""
import os
from pathlib import Path

from qgis.core import (
    QgsProcessingParameterBand,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
)

from ..core.distributed import steps
from ..core.errors import InputError
from ..core.inversion.inference import apply_model
from ..core.raster.blockio import raster_info
from .glue import styles
from .glue.base import PLUGIN_DIR, RsGeochemAlgorithm, name_output_layer, progress_callbacks, raster_path
from .glue.cluster import cluster_run
from .glue.mask_input import add_mask_parameter, mask_reader

DEFAULT_MODEL = PLUGIN_DIR / 'models' / 're2o3_cnn_gf2.onnx'
DEMO_WARNING = ('ONNX model: the shipped DEMONSTRATION model is used (models/re2o3_cnn_gf2.onnx, trained on '
                'the SIMULATED sample data): the map shows how the step works, not the content of real '
                'ground. Train a model on your own samples with "Train inversion model".')


def target_parts(target):
    """(field, units) of an output band description "field (units)" as apply_model writes it."""
    units = styles.units_in(target)
    return (target[:target.rfind('(')].strip() if units else target), units


def predicted_name(field, units):
    """The layer name a geologist would write: "RE2O3 predicted (%)" for units "% RE2O3", else
    "Predicted <field> (<units>)"."""
    element, unit = styles.element_and_unit(units)
    if element:
        return f'{element} predicted ({unit})'
    label = 'content' if field in ('', 'prediction', 'kriged', 'target') else field
    return f'Predicted {label}' + (f' ({units})' if units else '')


class ApplyInversionModelAlgorithm(RsGeochemAlgorithm):
    ALGORITHM_ID = 'applyinversionmodel'
    DISPLAY_NAME = 'Apply inversion model to a raster'
    GROUP_ID = 'inversion'
    RUNS_ON_CLUSTER = True
    REQUIRES = ('onnxruntime', 'onnx')
    TAGS = ('onnx', 'onnxruntime', 'cnn', 'inversion', 'prediction', 'map', 'regression')
    HELP = (
        'Maps element content over a whole image with a trained model: every pixel\'s band values go '
        'through an ONNX regression model and the predicted content is written to a GeoTIFF, loaded '
        'with a colour ramp and its units.\n'
        'Use it after "Train inversion model", on an image corrected the same way as the one the model '
        'was trained on (e.g. surface reflectance from "Dark object subtraction"). Give the Image and the '
        'ONNX model; add a Mask raster (e.g. from "Surface mask") to leave water, vegetation or villages '
        'out. Bands are matched to the model by their names; leave Bands feeding the model empty unless '
        'the model has no metadata or the names differ.\n'
        'The ONNX model is pre-filled with a DEMONSTRATION model trained on the SIMULATED sample data '
        '(models/re2o3_cnn_gf2.onnx, RE2O3 % from GF-2 surface reflectance): it shows how the step works '
        'and says nothing about real ground. The log warns and the layer name says so whenever it is '
        'used; train your own model on your samples.\n'
        'A content cannot be negative: predictions below 0 are set to 0 and counted in the log (uncheck '
        'Set negative contents to 0 to keep the model\'s raw values). An image of integer digital '
        'numbers is refused for a model trained on reflectance: calibrate it first.\n'
        'Method details. Models: any ONNX model with one float32 input and one output per pixel (shape '
        '(N, 1) or (N,)) taking raw band values (any scaling is part of the model), e.g. the CNN of Cheng '
        'et al. 2023 or the MLR / PLSR / random forest baselines of "Train inversion model". Input '
        'layouts: per pixel (N, bands); tiled (N, 1, S, S), band values repeated row-major in a square '
        'whose side S is the smallest multiple of 4 holding every band (the paper\'s 4 × 4 for up to 16 '
        'bands, 8 × 8 for 17-64, 16 × 16 for 145-256); patch (N, bands, k, k), the k × k neighbourhood of '
        'the pixel (k odd). Band order: the feature names in the model\'s metadata are looked up among the '
        'band descriptions (case-insensitive, any band order); a raster without descriptions is taken in '
        'band order when it has as many bands as the model has features. Nodata: a pixel where a used band '
        'is nodata or not finite, where the mask is 0 or nodata, or (patch models) whose neighbourhood '
        'holds such a pixel or crosses the raster edge is written as nodata (-9999). The raster is '
        'processed in blocks of rows sized from the block memory budget, so memory does not grow with the '
        'image size.')

    INPUT = 'INPUT'
    MODEL = 'MODEL'
    BANDS = 'BANDS'
    MASK = 'MASK'
    THREADS = 'THREADS'
    OUTPUT = 'OUTPUT'
    OUTPUT_OUT_OF_RANGE = 'OUTPUT_OUT_OF_RANGE'
    CLIP_NEGATIVE = 'CLIP_NEGATIVE'

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
            'Pre-filled with a DEMONSTRATION model: the paper-style CNN for RE2O3 % trained on the '
            'SIMULATED GF-2-like sample data (models/re2o3_cnn_gf2.onnx; features: blue, green, red, '
            'NIR surface reflectance). Train your own on your samples.')
        self.add(QgsProcessingParameterBand(
            self.BANDS, self.tr('Bands feeding the model, in its input order'), None, self.INPUT,
            optional=True, allowMultiple=True),
            'Raster band numbers in the order of the model\'s inputs (qgis_process: BANDS=3;2;1). '
            'Empty: taken from the model\'s metadata and the band descriptions. Needed for models '
            'without metadata.')
        add_mask_parameter(self, self.MASK)
        self.add(QgsProcessingParameterBoolean(
            self.CLIP_NEGATIVE, self.tr('Set negative contents to 0'), True),
            'A content cannot be negative: predictions below 0 (a regression model extrapolating) are set '
            'to 0 and counted in the log. Uncheck to keep the model\'s raw output.')
        self.add(QgsProcessingParameterNumber(
            self.THREADS, self.tr('onnxruntime threads'), QgsProcessingParameterNumber.Type.Integer, 2,
            False, 1, 256),
            'Threads onnxruntime uses to run the model (each runs its own batches; a random forest\'s '
            'trees are shared out between them instead); more than the number of CPU cores counts as '
            'that many.', advanced=True)
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
        model_path = self.parameterAsFile(parameters, self.MODEL, context) or str(DEFAULT_MODEL)
        demonstration = Path(model_path).resolve() == DEFAULT_MODEL.resolve()
        if demonstration:
            feedback.pushWarning(DEMO_WARNING)
        progress, cancel = progress_callbacks(feedback)
        minimum = 0.0 if self.parameterAsBool(parameters, self.CLIP_NEGATIVE, context) else None
        memory_mb = self.block_memory(parameters, context)
        run = cluster_run(feedback, progress, cancel)
        if run is not None:
            result = steps.infer(run, input_path, model_path, output, bands, mask and mask.info.path,
                                 memory_mb, minimum)
            if flags:
                feedback.pushWarning(f'{self.OUTPUT_OUT_OF_RANGE} is not written on a Dask cluster; run '
                                     'without the scheduler for it.')
                flags = None
        else:
            result = apply_model(
                input_path, model_path, output, bands=bands, mask_path=mask and mask.info.path,
                threads=self.parameterAsInt(parameters, self.THREADS, context),
                memory_mb=memory_mb, progress=progress, cancel=cancel, flags_path=flags, minimum=minimum)
        for note in result.notes:
            feedback.pushInfo(note)
        feedback.pushInfo(f'Layout {result.layout}; bands {", ".join(map(str, result.bands))} feed the '
                          f'model. {result.predicted} pixels predicted, {result.nodata} nodata; '
                          f'{result.blocks} blocks, batches of up to {result.batch} pixels.')
        if result.clipped:
            feedback.pushWarning(f'{result.clipped} of {result.predicted} predictions were below 0 (lowest '
                                 f'{result.lowest:.4g}) and were set to 0: a content cannot be negative. '
                                 f'Many of them mean the model extrapolates; uncheck "Set negative contents '
                                 f'to 0" ({self.CLIP_NEGATIVE}) to keep the raw values.')
        field, units = target_parts(result.target)
        name = predicted_name(field, units) + (' - DEMO model, simulated data' if demonstration else '')
        name_output_layer(context, output, name, styles.content(units))
        outputs = {self.OUTPUT: output}
        if flags and os.path.exists(flags):
            name_output_layer(context, flags, 'Pixels outside the training range', styles.out_of_range())
            outputs[self.OUTPUT_OUT_OF_RANGE] = flags
        elif flags:
            feedback.pushWarning(f'{self.OUTPUT_OUT_OF_RANGE}: the model carries no training range or '
                                 'standardisation in its metadata, so pixels cannot be flagged; not written.')
        return outputs
