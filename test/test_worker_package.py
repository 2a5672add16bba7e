"""pyproject.toml builds the core as a Python package for Dask workers and the command line: its
version is metadata.txt's, its dependencies requirements.txt's, and the installed copy runs a step."""
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from osgeo import gdal

from paths import CHECKOUT
from rsgeochem.core.version import plugin_version


@pytest.fixture(scope='module')
def wheel(tmp_path_factory):
    """The wheel built from a copy of the checkout's committed files (no build files in the checkout)."""
    # pyproject's build backend; the QGIS-version chroots install only the plugin's requirements
    pytest.importorskip('setuptools', reason='building the worker package needs setuptools')
    folder = tmp_path_factory.mktemp('wheel')
    source = folder / 'source'
    source.mkdir()
    files = subprocess.run(['git', '-C', str(CHECKOUT), 'ls-files'], check=True, capture_output=True,
                           text=True).stdout.split()
    for name in files:
        if not name.startswith(('test/', 'bench/')) and (CHECKOUT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_bytes((CHECKOUT / name).read_bytes())
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '--quiet',
                    '-w', str(folder / 'dist'), str(source)], check=True, capture_output=True, timeout=300)
    return next((folder / 'dist').glob('rsgeochem-*.whl'))


def test_wheel_holds_the_core_with_the_plugin_version_and_pins(wheel):
    version = plugin_version()
    assert wheel.name == f'rsgeochem-{version}-py3-none-any.whl'
    archive = zipfile.ZipFile(wheel)
    names = archive.namelist()
    core_packages = sorted(path.parent.name for path in (CHECKOUT / 'core').glob('*/__init__.py'))
    for package in core_packages:  # a new core subpackage must be listed in pyproject.toml
        assert f'rsgeochem/core/{package}/__init__.py' in names, package
    for data in ('metadata.txt', 'resources/indices.json', 'resources/sensors/gf2_pms.json'):
        assert f'rsgeochem/{data}' in names, data
    assert not any(name.startswith('rsgeochem/algorithms/') for name in names)  # no QGIS glue
    requires = [line.split(': ', 1)[1].replace(' ', '') for line in
                archive.read(f'rsgeochem-{version}.dist-info/METADATA').decode().splitlines()
                if line.startswith('Requires-Dist:') and 'extra ==' not in line]
    pins = [line.split('#')[0].strip() for line in (CHECKOUT / 'requirements.txt').read_text().splitlines()]
    assert sorted(requires) == sorted(f'{name}({spec[len(name):]})' for spec in pins if spec
                                      for name in [spec.split('==')[0]])


def test_installed_package_runs_a_step_from_the_command_line(wheel, tmp_path):
    target = tmp_path / 'site'
    zipfile.ZipFile(wheel).extractall(target)  # what pip installs of a pure-Python wheel (no pip start-up)
    data = np.arange(2 * 40 * 50, dtype=np.float32).reshape(2, 40, 50) + 1
    dn = str(tmp_path / 'dn.tif')
    dataset = gdal.GetDriverByName('GTiff').Create(dn, 50, 40, 2, gdal.GDT_Float32)
    dataset.SetGeoTransform((500000.0, 4.0, 0.0, 4000000.0, 0.0, -4.0))
    dataset.WriteArray(data)
    dataset = None
    command = [sys.executable, '-m', 'rsgeochem.core.distributed', '--tile-size', '16',
               'radiometriccalibration', '--input', dn, '--output', str(tmp_path / 'radiance.tif'),
               '--sensor', 'generic', '--gains', '2,3', '--quantity', 'radiance']
    env = {'PYTHONPATH': str(target), 'PATH': '/usr/bin:/bin'}  # the installed copy, not the checkout
    where = subprocess.run([sys.executable, '-c', 'import rsgeochem; print(rsgeochem.__file__)'],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60).stdout
    assert where.startswith(str(target))
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert '12 tiles computed' in done.stdout
    np.testing.assert_array_equal(gdal.Open(str(tmp_path / 'radiance.tif')).ReadAsArray(),
                                  data * np.array([2.0, 3.0], np.float32)[:, None, None])
