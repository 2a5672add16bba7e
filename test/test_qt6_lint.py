"""`make lint` rejects what breaks on QGIS 4 / PyQt6 (flake8-qgis through .flake8, and
scripts/check_qt6.py for unscoped enums and the metadata), and the plugin has none of it."""
import importlib.util
import re
import subprocess
import sys
import textwrap

from paths import CHECKOUT

BAD = textwrap.dedent('''
    from PyQt5.QtCore import QVariant
    from qgis.core import QgsField, QgsProcessing, QgsProcessingParameterNumber, QgsWkbTypes
    from qgis.PyQt.QtCore import Qt

    number = QgsProcessingParameterNumber
    sources = [QgsProcessing.TypeVectorPoint]
    kind = number.Double
    geometry = QgsWkbTypes.PolygonGeometry
    alignment = Qt.AlignLeft | Qt.AlignTop
    field = QgsField('x', QVariant.Double)


    def show(dialog):
        return dialog.exec_()
''')

GOOD = textwrap.dedent('''
    from qgis.core import QgsProcessing, QgsProcessingParameterNumber, QgsWkbTypes
    from qgis.PyQt.QtCore import Qt

    number = QgsProcessingParameterNumber
    sources = [QgsProcessing.SourceType.TypeVectorPoint]
    kind = number.Type.Double
    geometry = QgsWkbTypes.GeometryType.PolygonGeometry
    alignment = Qt.AlignmentFlag.AlignLeft
    output = QgsProcessing.TEMPORARY_OUTPUT


    def show(dialog):
        return dialog.exec()
''')


def load_checker():
    spec = importlib.util.spec_from_file_location('check_qt6', CHECKOUT / 'scripts' / 'check_qt6.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_flake8_qgis_flags_pyqt5_imports_exec_and_qvariant_types(tmp_path):
    bad = tmp_path / 'bad.py'
    bad.write_text(BAD)
    (tmp_path / 'good.py').write_text(GOOD)
    result = subprocess.run([sys.executable, '-m', 'flake8', '--config', str(CHECKOUT / '.flake8'),
                             str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    codes = {(line.split(':')[0], line.split()[1]) for line in result.stdout.splitlines()}
    assert codes == {(str(bad), 'QGS103'), (str(bad), 'QGS402'), (str(bad), 'QGS107')}, result.stdout


def test_check_qt6_flags_unscoped_enums_even_through_an_alias(tmp_path):
    checker = load_checker()
    bad, good = tmp_path / 'bad.py', tmp_path / 'good.py'
    bad.write_text(BAD)
    good.write_text(GOOD)
    found = checker.check_python(bad)
    written = [line.split('unscoped enum ')[1].split(':')[0] for line in found]
    assert written == ['QgsProcessing.TypeVectorPoint', 'number.Double', 'QgsWkbTypes.PolygonGeometry',
                       'Qt.AlignLeft', 'Qt.AlignTop'], found  # QVariant.Double: flake8-qgis
    # the suggestion is the scoped form of the running QGIS: QgsProcessing.SourceType on 3.22,
    # QgsProcessing.ProcessingSourceType (an alias of Qgis.ProcessingSourceType) since 3.36
    assert re.search(r'knows only (\w+\.){2,}TypeVectorPoint', found[0]), found[0]
    assert checker.check_python(good) == []


def test_check_qt6_requires_metadata_declaring_qgis4(tmp_path):
    checker = load_checker()
    (tmp_path / 'metadata.txt').write_text('[general]\nname=x\nqgisMinimumVersion=3.22\n')
    assert checker.main([str(tmp_path)]) == 1
    problems = checker.check_metadata(tmp_path / 'metadata.txt')
    assert len(problems) == 2 and 'qgisMaximumVersion=4.99' in problems[0] and 'supportsQt6' in problems[1]


def test_plugin_passes_check_qt6():
    assert load_checker().main([str(CHECKOUT)]) == 0
