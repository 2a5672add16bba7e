"""The provider: loads every algorithm and model, each with help on every parameter."""
import configparser

import pytest

from paths import CHECKOUT


@pytest.fixture(scope='module')
def provider(qgis_app):
    from qgis.core import QgsApplication
    return QgsApplication.processingRegistry().providerById('rsgeochem')


def test_provider_registered_with_icon_and_version(provider):
    metadata = configparser.ConfigParser(interpolation=None)
    metadata.read(CHECKOUT / 'metadata.txt')
    assert provider is not None
    assert provider.name() == 'RS Geochem Inversion'
    assert provider.versionInfo() == metadata['general']['version']
    assert not provider.icon().isNull()


def test_every_algorithm_has_help_on_every_parameter(provider):
    from qgis.core import QgsProcessingModelAlgorithm
    for algorithm in provider.algorithms():
        if isinstance(algorithm, QgsProcessingModelAlgorithm):
            continue
        assert algorithm.shortHelpString() or algorithm.helpString(), algorithm.id()
        for parameter in algorithm.parameterDefinitions():
            assert parameter.help(), f'{algorithm.id()}: parameter {parameter.name()} has no help'
            assert parameter.name() == parameter.name().upper(), parameter.name()


def test_metadata_fields_a_plugin_repository_expects():
    metadata = configparser.ConfigParser(interpolation=None)
    metadata.read(CHECKOUT / 'metadata.txt')
    general = metadata['general']
    for key in ('name', 'qgisMinimumVersion', 'description', 'about', 'version', 'author', 'email',
                'homepage', 'repository', 'tracker', 'tags', 'license', 'experimental', 'icon'):
        assert general.get(key), key
    assert general['qgisMinimumVersion'] == '3.22'
    assert general['hasProcessingProvider'] == 'yes'
    assert (CHECKOUT / general['icon']).exists()


def test_algorithms_do_not_override_qgis_run(provider):
    from rsgeochem.algorithms.glue.base import RsGeochemAlgorithm
    for algorithm in provider.algorithms():
        if isinstance(algorithm, RsGeochemAlgorithm):
            assert 'run' not in type(algorithm).__dict__, f'{algorithm.id()}: implement execute(), not run()'


def test_workflows_load_with_their_outputs(provider):
    """The provider loads models/*.model3 once it is registered, so their steps resolve."""
    from qgis.core import QgsProcessingModelAlgorithm
    models = {a.id(): a for a in provider.algorithms() if isinstance(a, QgsProcessingModelAlgorithm)}
    assert set(models) == {'rsgeochem:rareearthinversion', 'rsgeochem:geochemfusion'}
    for model in models.values():
        assert model.outputDefinitions(), model.id()
        assert model.shortHelpString()


LOAD_SCRIPT = '''
import sys
sys.path.insert(0, sys.argv[1])
sys.path.append('/usr/share/qgis/python/plugins')
from qgis.core import QgsApplication
app = QgsApplication([], False)
app.initQgis()
import rsgeochem
plugin = rsgeochem.classFactory(None)
plugin.initProcessing()
assert QgsApplication.processingRegistry().providerById('rsgeochem').algorithms()
print('LOADED ' + ' '.join(sorted(sys.modules)))
'''


def test_loading_the_plugin_leaves_plotting_and_statistics_unimported():
    """matplotlib and scipy.stats cost every qgis_process call (`list` and `help` too) ~0.6 CPU s
    and ~100 MB: they are imported where a report or a test statistic is made, not at load."""
    import subprocess
    import sys

    from paths import PLUGIN_PATH
    result = subprocess.run([sys.executable, '-c', LOAD_SCRIPT, str(PLUGIN_PATH)], capture_output=True,
                            text=True, timeout=120,
                            env={'QT_QPA_PLATFORM': 'offscreen', 'PYTHONDONTWRITEBYTECODE': '1',
                                 'PATH': '/usr/bin:/bin', 'HOME': '/tmp'})
    assert result.returncode == 0, result.stderr
    loaded = set(result.stdout.split('LOADED ', 1)[1].split())
    assert 'rsgeochem.algorithms.accuracyassessment' in loaded  # the check sees the plugin's modules
    assert not {module for module in loaded if module.split('.')[0] == 'matplotlib'}
    assert not {module for module in loaded if module.startswith(('scipy.stats', 'mpl_toolkits.'))}
