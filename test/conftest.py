"""Test set-up: the checkout is importable as `rsgeochem` through a symlink in a temp folder
(which also serves as QGIS_PLUGINPATH); one QgsApplication per session, created only by tests
that ask for it, so core tests run without QGIS."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

TEST_DIR = Path(__file__).resolve().parent
if str(TEST_DIR) not in sys.path:  # test helper modules (paths, factories) import by plain name
    sys.path.insert(0, str(TEST_DIR))

from paths import QGIS_PROCESS, TEST_DATA, qgis_process_env  # noqa: E402

QGIS_PYTHON_PLUGINS = '/usr/share/qgis/python/plugins'
if QGIS_PYTHON_PLUGINS not in sys.path:
    sys.path.append(QGIS_PYTHON_PLUGINS)
os.environ.setdefault('QT_QPA_PLATFORM', 'offscreen')
# no .aux.xml statistics files next to test data: tests never write into the checkout
os.environ['GDAL_PAM_ENABLED'] = 'NO'

@pytest.fixture(scope='session')
def test_data():
    return TEST_DATA


@pytest.fixture(scope='session')
def qgis_app(tmp_path_factory):
    """The session's QgsApplication with Processing initialised and the rsgeochem provider added."""
    from qgis.core import QgsApplication
    from qgis.PyQt.QtCore import QSettings
    app = QgsApplication([], False)
    app.initQgis()
    # settings of this session only: a setting a test writes (e.g. the Dask scheduler address) must
    # not reach the user's QGIS or another test session running at the same time
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope,
                      str(tmp_path_factory.mktemp('qgis-settings')))
    from processing.core.Processing import Processing
    Processing.initialize()
    from rsgeochem.algorithms.glue.provider import RsGeochemProvider
    provider = RsGeochemProvider()
    QgsApplication.processingRegistry().addProvider(provider)
    yield app
    QgsApplication.processingRegistry().removeProvider(provider)


@pytest.fixture(scope='session')
def run_alg(qgis_app):
    """processing.run('rsgeochem:<id>', params) with a fresh context and feedback."""
    import processing
    from qgis.core import QgsProcessingContext, QgsProcessingFeedback

    def run(algorithm_id, parameters, feedback=None):
        context = QgsProcessingContext()
        return processing.run(f'rsgeochem:{algorithm_id}', parameters, context=context,
                              feedback=feedback or QgsProcessingFeedback())
    return run


@pytest.fixture(scope='session')
def qgis_process(tmp_path_factory):
    """Run `qgis_process.bin <args>` in an isolated profile with the plugin enabled."""
    profile = tmp_path_factory.mktemp('qgis-profile')
    env = qgis_process_env(profile)
    subprocess.run([QGIS_PROCESS, 'plugins', 'enable', 'rsgeochem'], env=env, check=True,
                   capture_output=True, text=True, timeout=120)

    def run(*args, check=True, timeout=300):
        result = subprocess.run([QGIS_PROCESS, *args], env=env, capture_output=True, text=True,
                                timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f'qgis_process {args} failed ({result.returncode}):\n'
                                 f'{result.stdout}\n{result.stderr}')
        return result
    run.env = env  # for tests that start qgis_process themselves (signals)
    return run
