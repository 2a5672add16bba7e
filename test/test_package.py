"""`make package` builds a zip QGIS's "Install from ZIP" accepts, and the installed copy loads."""
import subprocess
import zipfile

import pytest

from paths import CHECKOUT, QGIS_PROCESS, qgis_process_env


@pytest.fixture(scope='module')
def package(tmp_path_factory):
    folder = tmp_path_factory.mktemp('package')
    target = folder / 'rsgeochem.zip'
    subprocess.run(['make', '--no-print-directory', '-C', str(CHECKOUT), 'package', f'PACKAGE={target}'],
                   check=True, capture_output=True, timeout=120)
    return target


def test_zip_holds_plugin_without_dev_files(package):
    names = zipfile.ZipFile(package).namelist()
    assert all(name.startswith('rsgeochem/') for name in names)
    for required in ('metadata.txt', '__init__.py', 'plugin.py', 'LICENSE', 'algorithms/glue/provider.py',
                     'core/raster/blockio.py', 'resources/icon.svg',
                     'requirements.txt', 'constraints.txt'):  # the pins "Install Python dependencies" reads
        assert f'rsgeochem/{required}' in names, required
    for dev in ('test/', 'bench/', 'scripts/', '.ci/', 'Makefile', 'requirements-dev.txt'):
        assert not any(name.startswith(f'rsgeochem/{dev}') for name in names), dev


def test_installed_zip_loads_in_qgis_process(package, tmp_path):
    plugins = tmp_path / 'plugins'
    zipfile.ZipFile(package).extractall(plugins)
    env = qgis_process_env(tmp_path / 'profile', plugins)
    subprocess.run([QGIS_PROCESS, 'plugins', 'enable', 'rsgeochem'], env=env, check=True,
                   capture_output=True, timeout=120)
    listing = subprocess.run([QGIS_PROCESS, 'list'], env=env, check=True, capture_output=True,
                             text=True, timeout=120).stdout
    assert 'RS Geochem Inversion' in listing
