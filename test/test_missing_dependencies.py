"""Without onnxruntime / onnx / skl2onnx / scikit-learn in QGIS's Python the plugin still loads, an
algorithm that needs them names every one it lacks in one message with the command installing
the pinned versions, and "Install Python dependencies" lists them."""
import json
import subprocess
import sys
import textwrap
from importlib import metadata

import pytest

from paths import CHECKOUT, PLUGIN_PATH

HIDDEN = ('onnxruntime', 'onnx', 'skl2onnx', 'sklearn', 'pykrige')
REQUIRED = dict(line.split('==') for line in (CHECKOUT / 'requirements.txt').read_text().split()
                if '==' in line)
PIP_NAMES = {'onnxruntime': 'onnxruntime', 'onnx': 'onnx', 'skl2onnx': 'skl2onnx', 'sklearn': 'scikit-learn'}

SCRIPT = textwrap.dedent('''
    import importlib.abc, json, sys
    HIDDEN = set(sys.argv[2].split(','))

    class HidePackages(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split('.')[0] in HIDDEN:
                raise ImportError(f'No module named {name!r} (hidden by the test)')
            return None

    sys.meta_path.insert(0, HidePackages())
    sys.path.insert(0, sys.argv[1])
    sys.path.append('/usr/share/qgis/python/plugins')
    from qgis.core import (QgsApplication, QgsProcessingContext, QgsProcessingException,
                           QgsProcessingFeedback)
    app = QgsApplication([], False)
    app.initQgis()
    import rsgeochem
    plugin = rsgeochem.classFactory(None)
    plugin.initProcessing()
    provider = QgsApplication.processingRegistry().providerById('rsgeochem')
    report = {'provider': provider is not None, 'algorithms': {}}
    for algorithm in provider.algorithms():
        needs = [m for m in getattr(algorithm, 'REQUIRES', ()) if m in HIDDEN]
        if not needs:
            continue
        try:
            algorithm.processAlgorithm({}, QgsProcessingContext(), QgsProcessingFeedback())
            report['algorithms'][algorithm.id()] = ['ran', needs]
        except QgsProcessingException as error:
            report['algorithms'][algorithm.id()] = [str(error), needs]
    installer = provider.algorithm('installdependencies')
    report['listed'] = installer.processAlgorithm({'CHECK_ONLY': True}, QgsProcessingContext(),
                                                  QgsProcessingFeedback())['MISSING']
    leaked = sorted(m for m in sys.modules if m.split('.')[0] in HIDDEN)
    report['leaked'] = leaked
    plugin.unload()
    report['unloaded'] = QgsApplication.processingRegistry().providerById('rsgeochem') is None
    print('REPORT' + json.dumps(report))
''')


def run_hidden(hidden):
    result = subprocess.run([sys.executable, '-c', SCRIPT, str(PLUGIN_PATH), ','.join(hidden)],
                            capture_output=True, text=True, timeout=120,
                            env={'QT_QPA_PLATFORM': 'offscreen', 'PYTHONDONTWRITEBYTECODE': '1',
                                 'PATH': '/usr/bin:/bin', 'HOME': '/tmp'})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.split('REPORT', 1)[1])


def named_packages(message):
    """The package names listed in a missing-dependencies message, in order."""
    listed = message.split('needs the Python package', 1)[1].split(', which', 1)[0]
    return listed.removeprefix('s').strip().split(', ')


@pytest.mark.parametrize('hidden', [HIDDEN, ('sklearn', 'skl2onnx')])
def test_plugin_loads_and_algorithms_name_every_missing_package(hidden):
    report = run_hidden(hidden)
    assert report['provider'] and report['unloaded']
    assert report['leaked'] == []
    assert 'rsgeochem:traininversionmodel' in report['algorithms']  # the check is not vacuous
    for algorithm_id, (message, needs) in report['algorithms'].items():
        expected = sorted(PIP_NAMES[module] for module in needs)
        assert sorted(named_packages(message)) == expected, (algorithm_id, message)
        assert 'Install Python dependencies' in message and '-m pip install' in message, message
        # the command installs the pinned versions of those packages and keeps numpy, scipy, ... at
        # the versions QGIS's Python has
        command = message.split('-m pip install', 1)[1].split(';')[0]
        pins = dict(word.split('==') for word in command.split() if '==' in word)
        assert {name: pins[name] for name in expected} == {name: REQUIRED[name] for name in expected}
        assert {name: version for name, version in pins.items() if name not in expected} == \
            {name: metadata.version(name) for name in pins if name not in expected} != {}
    if hidden == HIDDEN:
        assert named_packages(report['algorithms']['rsgeochem:traininversionmodel'][0]) == \
            ['onnx', 'scikit-learn', 'skl2onnx']
    assert sorted(report['listed'].split(', ')) == sorted(PIP_NAMES[m] for m in hidden if m in PIP_NAMES)
