"""Without onnxruntime / pykrige / scikit-learn in QGIS's Python the plugin still loads, and an
algorithm that needs one says which package is missing and how to install it."""
import json
import subprocess
import sys
import textwrap

from paths import PLUGIN_PATH

HIDDEN = ('onnxruntime', 'onnx', 'skl2onnx', 'sklearn', 'pykrige')

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
            report['algorithms'][algorithm.id()] = 'ran'
        except QgsProcessingException as error:
            report['algorithms'][algorithm.id()] = str(error)
    leaked = sorted(m for m in sys.modules if m.split('.')[0] in HIDDEN)
    report['leaked'] = leaked
    plugin.unload()
    report['unloaded'] = QgsApplication.processingRegistry().providerById('rsgeochem') is None
    print('REPORT' + json.dumps(report))
''')


def test_plugin_loads_and_algorithms_name_missing_package():
    result = subprocess.run([sys.executable, '-c', SCRIPT, str(PLUGIN_PATH), ','.join(HIDDEN)],
                            capture_output=True, text=True, timeout=120,
                            env={'QT_QPA_PLATFORM': 'offscreen', 'PYTHONDONTWRITEBYTECODE': '1',
                                 'PATH': '/usr/bin:/bin', 'HOME': '/tmp'})
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.split('REPORT', 1)[1])
    assert report['provider'] and report['unloaded']
    assert report['leaked'] == []
    assert 'rsgeochem:traininversionmodel' in report['algorithms']  # the check is not vacuous
    for algorithm_id, message in report['algorithms'].items():
        assert 'pip install' in message, (algorithm_id, message)
        assert any(f'"{name}"' in message for name in ('onnxruntime', 'onnx', 'skl2onnx', 'scikit-learn',
                                                      'pykrige')), message
