"""QGIS 4 / PyQt6 readiness checks that flake8-qgis does not make (it covers PyQt5 imports, exec_()
and QVariant types; see .flake8):

- unscoped enum access on a Qt or QGIS class, e.g. `QgsProcessing.TypeVectorPoint` or
  `Qt.AlignLeft`: PyQt6 knows only the scoped `Class.Enum.Member` form. Found by resolving each
  `Name.attr` chain whose root is imported from qgis.* against the installed QGIS and asking
  whether the member belongs to an enum other than the object it was read from (QGIS's own
  migration script, scripts/pyqt5_to_pyqt6 in qgis/QGIS, uses the same test, from a cached table);
- metadata.txt declaring QGIS 4: qgisMaximumVersion 4.x and supportsQt6=True.

Usage: check_qt6.py [PATH ...] (files or folders; default: the checkout). Exit status 1 on
findings, each printed as path:line:column: message."""
import argparse
import ast
import configparser
import enum
import importlib
import sys
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parent.parent
SKIPPED_DIRS = {'.venv', '.git', '__pycache__', 'data'}


def is_enum_member(value):
    # PyQt5's sip makes C++ enums `sip.enumtype` classes (int subclasses); scoped ones and every
    # PyQt6 enum are Python enums
    return isinstance(value, enum.Enum) or type(type(value)).__name__ == 'enumtype'


def qgis_names(tree):
    """{local name: object} for names imported from qgis.* modules and for plain aliases of them
    (`number = QgsProcessingParameterNumber`), wherever in the file they are bound."""
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split('.')[0] == 'qgis':
            try:
                module = importlib.import_module(node.module)
            except ImportError:
                continue
            for alias in node.names:
                if hasattr(module, alias.name):
                    names[alias.asname or alias.name] = getattr(module, alias.name)
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            value = resolve(node.value, names)
            if isinstance(value, type):
                names[node.targets[0].id] = value
    return names


def resolve(node, names):
    """The object an expression of names and attributes stands for, or None."""
    if isinstance(node, ast.Name):
        return names.get(node.id)
    if isinstance(node, ast.Attribute):
        owner = resolve(node.value, names)
        return getattr(owner, node.attr, None) if owner is not None else None
    return None


def unscoped_enums(tree, names):
    """(line, column, message) for each `Owner.Member` whose member is an enum value of another
    enum than Owner."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        owner = resolve(node.value, names)
        if owner is None or not isinstance(owner, type):
            continue
        member = getattr(owner, node.attr, None)
        if member is None or not is_enum_member(member) or type(member) is owner:
            continue
        written = ast.unparse(node)
        scoped = f'{ast.unparse(node.value)}.{type(member).__name__}.{node.attr}'
        yield (node.lineno, node.col_offset,
               f'unscoped enum {written}: PyQt6 knows only {scoped} (or, where QGIS renamed the '
               'member, a shim in algorithms/glue/compat.py)')


def check_python(path):
    tree = ast.parse(path.read_text(encoding='utf-8'), filename=str(path))
    names = qgis_names(tree)
    return [f'{path}:{line}:{column + 1}: {message}'
            for line, column, message in sorted(unscoped_enums(tree, names))]


def check_metadata(path):
    parser = configparser.ConfigParser()
    parser.read(path, encoding='utf-8')
    general = parser['general'] if parser.has_section('general') else {}
    problems = []
    if not general.get('qgisMaximumVersion', '').startswith('4.'):
        problems.append(f'{path}: set qgisMaximumVersion=4.99, or QGIS 4 will not load the plugin')
    if general.get('supportsQt6', '').strip().lower() != 'true':
        problems.append(f'{path}: set supportsQt6=True (the plugin is checked for PyQt6)')
    return problems


def python_files(paths):
    for path in paths:
        if path.is_dir():
            for child in sorted(path.rglob('*.py')):
                if not SKIPPED_DIRS & set(child.relative_to(path).parts):
                    yield child
        elif path.suffix == '.py':
            yield path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('paths', nargs='*', type=Path, default=[CHECKOUT])
    arguments = parser.parse_args(argv)
    problems = []
    for path in python_files(arguments.paths):
        problems += check_python(path)
    for path in arguments.paths:
        metadata = path / 'metadata.txt' if path.is_dir() else None
        if metadata is not None and metadata.exists():
            problems += check_metadata(metadata)
    print('\n'.join(problems) or 'check_qt6: no PyQt5-only constructs found')
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main())
