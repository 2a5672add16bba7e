"""The rsgeochem Processing provider: every algorithm module in algorithms/ and every
models/*.model3 workflow."""
import importlib
import inspect
import pkgutil

from qgis.core import QgsApplication, QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from ...core.version import plugin_version
from .base import ICON_PATH, PLUGIN_DIR, RsGeochemAlgorithm
from .cluster import SCHEDULER_SETTING, SETTING_LABEL
from .workflow import Workflow

PROVIDER_ID = 'rsgeochem'
MODELS_DIR = PLUGIN_DIR / 'models'


def algorithm_classes():
    """Every concrete RsGeochemAlgorithm subclass defined in a module of this package, so a new
    algorithm file needs no registration elsewhere."""
    classes = []
    algorithms_package = __package__.rsplit('.', 1)[0]
    for module_info in pkgutil.iter_modules([str(PLUGIN_DIR / 'algorithms')]):
        if module_info.ispkg:  # glue/ holds the shared helpers, not algorithms
            continue
        module = importlib.import_module(f'{algorithms_package}.{module_info.name}')
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if (issubclass(cls, RsGeochemAlgorithm) and cls.__module__ == module.__name__
                    and cls.ALGORITHM_ID):
                classes.append(cls)
    return sorted(classes, key=lambda cls: cls.ALGORITHM_ID)


def model_files():
    return sorted(MODELS_DIR.glob('*.model3'))


class RsGeochemProvider(QgsProcessingProvider):
    def id(self):
        return PROVIDER_ID

    def name(self):
        return 'RS Geochem Inversion'

    def longName(self):  # noqa: N802 - QGIS API
        return f'RS Geochem Inversion {plugin_version()}'

    def icon(self):
        return QIcon(str(ICON_PATH))

    def versionInfo(self):  # noqa: N802 - QGIS API
        return plugin_version()

    def supportedOutputRasterLayerExtensions(self):  # noqa: N802 - QGIS API
        return ['tif', 'tiff']  # every raster output is written by core.raster.blockio.RasterWriter

    def load(self):
        # the "Dask scheduler address" field in Processing > Options > Providers (glue/cluster.py)
        from processing.core.ProcessingConfig import ProcessingConfig, Setting
        ProcessingConfig.settingIcons[self.name()] = self.icon()
        ProcessingConfig.addSetting(Setting(self.name(), SCHEDULER_SETTING, SETTING_LABEL, ''))
        ProcessingConfig.readSettings()
        self.refreshAlgorithms()
        return True

    def unload(self):
        from processing.core.ProcessingConfig import ProcessingConfig
        ProcessingConfig.removeSetting(SCHEDULER_SETTING)

    def loadAlgorithms(self):  # noqa: N802 - QGIS API
        for cls in algorithm_classes():
            self.addAlgorithm(cls())
        registry = QgsApplication.processingRegistry()
        if registry.providerById(self.id()) is not self:
            # addProvider() loads algorithms before it registers the provider, so the workflows'
            # steps cannot be resolved yet (their outputs would be missing): load them once added
            registry.providerAdded.connect(self._load_models_when_registered)
            return
        for path in model_files():
            model = Workflow()
            if model.fromFile(str(path)):
                self.addAlgorithm(model)

    def _load_models_when_registered(self, provider_id):
        if provider_id == self.id():
            QgsApplication.processingRegistry().providerAdded.disconnect(self._load_models_when_registered)
            self.refreshAlgorithms()
