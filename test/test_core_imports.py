"""core/ must stay free of qgis so the science runs (and is tested) without QGIS."""
import ast

from paths import CHECKOUT


def test_core_never_imports_qgis():
    for path in sorted((CHECKOUT / 'core').rglob('*.py')):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split('.')[0] not in ('qgis', 'processing', 'PyQt5'), (path.name, name)


# core's subpackages by layer: a subpackage imports only from its own or a lower layer (the
# top-level modules errors, dependencies, version, metrics and linalg form layer 0)
LAYERS = {'raster': 1, 'report': 1, 'imagery': 2, 'geostat': 2,
          'inversion': 3, 'fusion': 3, 'anomalies': 3, 'distributed': 4}


def core_imports(path):
    """(subpackage or top-level module) names of core that `path` imports."""
    package = path.relative_to(CHECKOUT / 'core').parts[:-1]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = list(package[:len(package) - (node.level - 1)]) if node.level > 1 else list(package)
            target = [*base, *(node.module.split('.') if node.module else [])]
            if target:
                yield target[0]
            else:  # `from .. import name`: the names are core's modules or subpackages
                yield from (alias.name for alias in node.names)


def test_core_subpackages_import_only_lower_layers():
    subpackages = {path.name for path in (CHECKOUT / 'core').iterdir() if (path / '__init__.py').exists()}
    assert subpackages == set(LAYERS), 'give a new subpackage its layer'
    for path in sorted((CHECKOUT / 'core').rglob('*.py')):
        parts = path.relative_to(CHECKOUT / 'core').parts
        own = LAYERS[parts[0]] if len(parts) > 1 else 0
        for name in core_imports(path):
            layer = LAYERS.get(name, 0)
            allowed = layer < own or name == parts[0] or own == layer == 0
            assert allowed, f'{path.relative_to(CHECKOUT)} imports core.{name}'


def test_core_has_few_top_level_modules():
    modules = sorted(path.stem for path in (CHECKOUT / 'core').glob('*.py') if path.stem != '__init__')
    assert modules == ['dependencies', 'errors', 'linalg', 'metrics', 'version']
