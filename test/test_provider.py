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
