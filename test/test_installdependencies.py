"""Setup > Install Python dependencies: lists what is missing, pip-installs the pinned versions (here
a small wheel the test builds, from a local folder, into a throw-away target: no network), stops
pip on cancel; and QGIS's own Python is found where each platform's QGIS keeps it."""
import base64
import hashlib
import os
import subprocess
import sys
import zipfile

import pytest

PROBE = 'rsgeochem-probe'
PROBE_FILES = {
    'rsgeochem_probe/__init__.py': 'VALUE = 42\n',
    'rsgeochem_probe-1.0.dist-info/METADATA': f'Metadata-Version: 2.1\nName: {PROBE}\nVersion: 1.0\n',
    'rsgeochem_probe-1.0.dist-info/WHEEL': 'Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n'
                                           'Tag: py3-none-any\n',
}


def build_wheel(folder):
    """A minimal pure-Python wheel of PROBE 1.0 (PEP 427 layout, RECORD with sha256 digests)."""
    folder.mkdir()
    record = []
    for name, text in PROBE_FILES.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b'=').decode()
        record.append(f'{name},sha256={digest},{len(text.encode())}')
    record.append('rsgeochem_probe-1.0.dist-info/RECORD,,')
    with zipfile.ZipFile(folder / 'rsgeochem_probe-1.0-py3-none-any.whl', 'w') as wheel:
        for name, text in PROBE_FILES.items():
            wheel.writestr(name, text)
        wheel.writestr('rsgeochem_probe-1.0.dist-info/RECORD', '\n'.join(record) + '\n')
    return folder


@pytest.fixture
def probe_requirements(tmp_path, monkeypatch):
    """The plugin's requirements replaced by PROBE==1.0, found by pip only in a local folder."""
    from rsgeochem.core import dependencies
    requirements = tmp_path / 'requirements.txt'
    requirements.write_text(f'# test\n{PROBE}==1.0\n')
    monkeypatch.setattr(dependencies, 'REQUIREMENTS_FILE', requirements)
    monkeypatch.setenv('PIP_NO_INDEX', '1')
    monkeypatch.setenv('PIP_FIND_LINKS', str(build_wheel(tmp_path / 'wheels')))
    return dependencies


def test_lists_missing_package_without_installing(run_alg, probe_requirements, tmp_path):
    result = run_alg('installdependencies', {'CHECK_ONLY': True, 'TARGET_FOLDER': str(tmp_path / 'target')})
    assert result['MISSING'] == PROBE and result['INSTALLED'] == '' and not result['RESTART_NEEDED']
    assert not (tmp_path / 'target').exists()


def test_installs_pinned_version_into_target_folder(run_alg, probe_requirements, tmp_path):
    from qgis.core import QgsProcessingFeedback

    class Log(QgsProcessingFeedback):
        lines = []

        def pushConsoleInfo(self, text):  # noqa: N802 - QGIS API
            self.lines.append(text)

    target = tmp_path / 'target'
    feedback = Log()
    result = run_alg('installdependencies', {'TARGET_FOLDER': str(target)}, feedback)
    assert result['MISSING'] == result['INSTALLED'] == PROBE and not result['RESTART_NEEDED']
    assert any(line.startswith('Successfully installed rsgeochem-probe-1.0') for line in Log.lines), Log.lines
    assert feedback.progress() == 100
    # another Python finds the installed package in the target folder
    imported = subprocess.run([sys.executable, '-c', 'import rsgeochem_probe; print(rsgeochem_probe.VALUE)'],
                              env=dict(os.environ, PYTHONPATH=str(target)), capture_output=True, text=True,
                              timeout=60)
    assert imported.stdout.strip() == '42', imported.stderr
    assert (target / 'rsgeochem_probe-1.0.dist-info' / 'METADATA').exists()


def test_cancel_stops_pip(run_alg, probe_requirements, tmp_path, monkeypatch):
    from qgis.core import QgsProcessingException, QgsProcessingFeedback

    # a stand-in "python" whose pip says one line and then waits a minute
    pid_file = tmp_path / 'pip.pid'
    fake_python = tmp_path / 'python3'
    fake_python.write_text(f'#!/bin/sh\necho $$ > "{pid_file}"\necho "Collecting {PROBE}==1.0"\n'
                           'exec sleep 60\n')
    fake_python.chmod(0o755)
    monkeypatch.setattr(probe_requirements, 'qgis_python', lambda: fake_python)

    class CancelOnFirstLine(QgsProcessingFeedback):
        def pushConsoleInfo(self, text):  # noqa: N802 - QGIS API
            if text.startswith('Collecting'):
                self.cancel()

    with pytest.raises(QgsProcessingException, match='Cancelled: pip was stopped'):
        run_alg('installdependencies', {'TARGET_FOLDER': str(tmp_path / 'target')}, CancelOnFirstLine())
    with pytest.raises(ProcessLookupError):  # ended and reaped, not left sleeping
        os.kill(int(pid_file.read_text()), 0)


def test_pip_failure_is_reported(run_alg, probe_requirements, tmp_path, monkeypatch):
    from qgis.core import QgsProcessingException
    monkeypatch.setenv('PIP_FIND_LINKS', str(tmp_path))  # no wheel there
    with pytest.raises(QgsProcessingException, match=r'pip failed \(exit status 1\)'):
        run_alg('installdependencies', {'TARGET_FOLDER': str(tmp_path / 'target')})


def test_finds_qgis_python_on_each_platform(tmp_path):
    from rsgeochem.core.dependencies import qgis_python

    def touch(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text('')
        return path

    # macOS, qgis.org bundle: sys.executable is the QGIS program
    app = tmp_path / 'QGIS.app' / 'Contents'
    python = touch(app / 'MacOS' / 'bin' / 'python3')
    assert qgis_python(app / 'MacOS' / 'QGIS', app / 'Frameworks', 'darwin') == python
    # Windows, OSGeo4W: qgis-bin.exe, Python under apps/
    root = tmp_path / 'OSGeo4W'
    python = touch(root / 'apps' / 'Python312' / 'python.exe')
    assert qgis_python(root / 'bin' / 'qgis-bin.exe', root / 'apps' / 'Python312', 'win32') == python
    # Linux, distribution packages: the system interpreter under sys.exec_prefix
    version = f'{sys.version_info.major}.{sys.version_info.minor}'
    python = touch(tmp_path / 'usr' / 'bin' / f'python{version}')
    assert qgis_python(tmp_path / 'usr' / 'bin' / 'qgis', tmp_path / 'usr', 'linux') == python
    assert qgis_python(tmp_path / 'nothing' / 'qgis', tmp_path / 'nothing', 'linux') is None


def test_install_command_per_platform():
    from rsgeochem.core.dependencies import Requirement, install_command
    onnx = Requirement('onnx', '1.23.2')
    assert install_command([onnx], 'win32').startswith('in the OSGeo4W Shell')
    assert 'python -m pip install' in install_command([onnx], 'win32')
    assert install_command([onnx], 'darwin').startswith('in Terminal: "')
    linux = install_command([onnx], 'linux')
    assert ' -m pip install' in linux and 'onnx==1.23.2' in linux and 'numpy==' in linux


def test_qgis_process_lists_what_is_missing(qgis_process):
    result = qgis_process('run', 'rsgeochem:installdependencies', '--CHECK_ONLY=true')
    assert 'Nothing to install' in result.stdout + result.stderr
