"""Shared glue for every rsgeochem algorithm: naming, help, dependency checks, up-front parameter
checks, error mapping, progress/cancel callables for core code."""
import signal
import threading
from contextlib import contextmanager
from pathlib import Path

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterString,
)
from qgis.PyQt.QtCore import QCoreApplication
from qgis.PyQt.QtGui import QIcon

from ...core.dependencies import require_all
from ...core.errors import CancelledError, InputError, MissingDependencyError
from ...core.raster.blockio import DEFAULT_MEMORY_MB, creation_options
from ...core.raster.memory import release_freed_memory
from . import compat
from .checks import PROVIDER_PREFIX, check_parameters, explain_invalid, range_text
from .cluster import CLUSTER_HELP
from .styles import OutputLayer

PLUGIN_DIR = Path(__file__).resolve().parents[2]
ICON_PATH = PLUGIN_DIR / 'resources' / 'icon.svg'

# numbered so that the toolbox, which sorts groups by name, lists them in the order of the work
GROUPS = {
    'imagecorrection': '1 Image correction',
    'sampling': '2 Geochemical sampling',
    'inversion': '3 Inversion',
    'fusion': '4 Fusion',
    'anomalies': '5 Anomalies',
    'setup': '0 Setup',
}

BLOCK_MEMORY_MB = 'BLOCK_MEMORY_MB'
# GDAL creation options of the raster outputs, as QGIS's own raster algorithms take them
CREATION_OPTIONS = 'CREATION_OPTIONS'


class RsGeochemAlgorithm(QgsProcessingAlgorithm):
    """Base class: subclasses set the class attributes and implement initAlgorithm() and execute()
    (never run(): that is QgsProcessingAlgorithm.run, which processing.run calls)."""

    ALGORITHM_ID = ''
    DISPLAY_NAME = ''
    GROUP_ID = ''
    HELP = ''
    TAGS = ()
    RUNS_ON_CLUSTER = False  # core.distributed has a tile-by-tile version (see glue/cluster.py)
    # import names of optional packages run() needs (checked before run, see core.dependencies)
    REQUIRES = ()

    def name(self):
        return self.ALGORITHM_ID

    def displayName(self):  # noqa: N802 - QGIS API
        return self.tr(self.DISPLAY_NAME)

    def group(self):
        return self.tr(GROUPS[self.GROUP_ID])

    def groupId(self):  # noqa: N802 - QGIS API
        return self.GROUP_ID

    def tags(self):
        return [self.tr(tag) for tag in self.TAGS]

    def shortHelpString(self):  # noqa: N802 - QGIS API
        return self.tr(self.HELP) + (self.tr(CLUSTER_HELP) if self.RUNS_ON_CLUSTER else '')

    def icon(self):
        return QIcon(str(ICON_PATH))

    def createInstance(self):  # noqa: N802 - QGIS API
        return type(self)()

    def tr(self, text):
        return QCoreApplication.translate(type(self).__name__, text)

    def add(self, parameter, help_text, advanced=False):
        """Add a parameter with its help text (shown by `qgis_process help`), followed by the range
        QGIS enforces for a number, and return it."""
        parameter.setHelp(' '.join(part for part in (self.tr(help_text), range_text(parameter)) if part))
        if advanced:
            parameter.setFlags(parameter.flags() | compat.PARAMETER_ADVANCED)
        self.addParameter(parameter)
        if (isinstance(parameter, QgsProcessingParameterRasterDestination)
                and self.parameterDefinition(CREATION_OPTIONS) is None):
            self.add_creation_options()
        return parameter

    def add_creation_options(self):
        """The "Creation options" of QGIS's raster algorithms (advanced, with QGIS's profile widget),
        added with the first raster output; '|'-separated GDAL GeoTIFF options."""
        parameter = QgsProcessingParameterString(CREATION_OPTIONS, self.tr('Creation options'), None,
                                                 False, True)
        parameter.setMetadata({'widget_wrapper': {'widget_type': 'rasteroptions'}})
        self.add(parameter, 'GDAL GeoTIFF creation options of the raster outputs, separated by |, e.g. '
                 'COMPRESS=DEFLATE|ZLEVEL=9 for smaller files to keep. They override the defaults (tiled, '
                 'ZSTD level 1: fast to write and read back).',
                 advanced=True)

    def add_block_memory(self):
        self.add(QgsProcessingParameterNumber(
            BLOCK_MEMORY_MB, self.tr('Block memory budget (MB)'),
            QgsProcessingParameterNumber.Type.Integer, DEFAULT_MEMORY_MB, False, 16, 65536),
            'Memory for one block of raster rows (read, work arrays and output). Larger blocks are '
            'slightly faster; memory use does not grow with the raster size.', advanced=True)

    def block_memory(self, parameters, context):
        return self.parameterAsInt(parameters, BLOCK_MEMORY_MB, context)

    def checkParameterValues(self, parameters, context):  # noqa: N802 - QGIS API
        """QGIS's checks, with a reason instead of "Incorrect parameter value for KEY"."""
        accepted, message = super().checkParameterValues(parameters, context)
        if accepted:
            return accepted, message
        return accepted, explain_invalid(self, parameters, context) or message

    def parameterAsSink(self, parameters, name, context, *args, **kwargs):  # noqa: N802 - QGIS API
        """QGIS's sink, in a folder created when missing (as raster outputs are)."""
        destination = self.parameterAsOutputLayer(parameters, name, context)
        if destination and not PROVIDER_PREFIX.match(destination):
            Path(destination).parent.mkdir(parents=True, exist_ok=True)
        return super().parameterAsSink(parameters, name, context, *args, **kwargs)

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 - QGIS API
        try:
            require_all(self.REQUIRES)
            check_parameters(self, parameters, context, feedback)
            with terminate_as_cancel(feedback), creation_options(self.creation_options(parameters, context)):
                return self.execute(parameters, context, feedback)
        except (InputError, MissingDependencyError) as error:
            raise QgsProcessingException(str(error)) from error
        except CancelledError as error:
            raise QgsProcessingException(self.tr('Cancelled: no output was written.')) from error
        finally:
            release_freed_memory()

    def creation_options(self, parameters, context):
        if self.parameterDefinition(CREATION_OPTIONS) is None:
            return []
        return (self.parameterAsString(parameters, CREATION_OPTIONS, context) or '').split('|')

    def execute(self, parameters, context, feedback):
        raise NotImplementedError


@contextmanager
def terminate_as_cancel(feedback):
    """While the block runs, SIGTERM (a killed qgis_process) cancels the run like the Cancel button,
    so partial outputs and temporary folders are removed; a second SIGTERM ends the process at once.
    Only where Python can install a handler (the main thread, e.g. qgis_process; the desktop runs
    algorithms on worker threads) and one of Python's own is in place."""
    previous = signal.getsignal(signal.SIGTERM)
    if threading.current_thread() is not threading.main_thread() or previous is None:
        yield
        return

    def cancel(signum, frame):
        signal.signal(signal.SIGTERM, previous)
        feedback.cancel()

    signal.signal(signal.SIGTERM, cancel)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def progress_callbacks(feedback, start=0.0, end=100.0):
    """(progress, cancel) callables for core code: progress(fraction 0..1) maps onto
    start..end percent of the feedback bar; cancel() is True once the user cancels."""
    def progress(fraction):
        feedback.setProgress(start + (end - start) * min(max(fraction, 0.0), 1.0))

    return progress, feedback.isCanceled


def name_output_layer(context, destination, name, style=None):
    """Name (and style: a function of the loaded layer from glue/styles.py) an output that QGIS
    loads into the project when the run ends."""
    if context.willLoadLayerOnCompletion(destination):
        details = context.layerToLoadOnCompletionDetails(destination)
        details.name = name
        details.forceName = True  # not the file name, whatever Processing's setting says
        details.setPostProcessor(OutputLayer.create(name, style))


def raster_path(algorithm, parameters, key, context):
    """File path of a raster parameter, or QgsProcessingException naming the parameter."""
    layer = algorithm.parameterAsRasterLayer(parameters, key, context)
    if layer is None:
        raise QgsProcessingException(f'{key}: choose a raster layer.')
    if layer.providerType() != 'gdal':
        raise QgsProcessingException(
            f'{key}: "{layer.name()}" is a {layer.providerType()} layer; save it as a GeoTIFF first.')
    return layer.source().split('|')[0]
