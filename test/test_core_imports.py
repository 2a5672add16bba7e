"""core/ must stay free of qgis so the science runs (and is tested) without QGIS."""
import ast

from paths import CHECKOUT


def test_core_never_imports_qgis():
    for path in sorted((CHECKOUT / 'core').glob('*.py')):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split('.')[0] not in ('qgis', 'processing', 'PyQt5'), (path.name, name)
