"""Paths shared by tests; importing this makes the checkout importable as `rsgeochem`."""
import os
import sys
import sysconfig
import tempfile
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parent.parent
TEST_DATA = CHECKOUT / 'test' / 'data'
# removed when the test session ends (the finaliser of TemporaryDirectory; rmtree unlinks the symlink)
_PLUGIN_FOLDER = tempfile.TemporaryDirectory(prefix='rsgeochem-plugins-')
PLUGIN_PATH = Path(_PLUGIN_FOLDER.name)
(PLUGIN_PATH / 'rsgeochem').symlink_to(CHECKOUT, target_is_directory=True)
sys.path.insert(0, str(PLUGIN_PATH))

QGIS_PROCESS = '/usr/bin/qgis_process.bin'


def qgis_process_env(profile, plugin_path=PLUGIN_PATH):
    # the running venv's packages, wherever it lives and whatever its Python version
    venv_site = sysconfig.get_path('purelib')
    env = dict(os.environ, QGIS_PLUGINPATH=str(plugin_path), QGIS_CUSTOM_CONFIG_PATH=str(profile),
               QT_QPA_PLATFORM='offscreen', PYTHONPATH=str(venv_site), PYTHONDONTWRITEBYTECODE='1')
    return env
