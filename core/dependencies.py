"""Optional third-party packages: import on demand, fail with the install command."""
import importlib
import sys

from .errors import MissingDependencyError

# import name -> pip distribution name
PIP_NAMES = {
    'onnxruntime': 'onnxruntime',
    'onnx': 'onnx',
    'skl2onnx': 'skl2onnx',
    'sklearn': 'scikit-learn',
    'pykrige': 'pykrige',
}


def install_command(module_name):
    pip_name = PIP_NAMES.get(module_name, module_name)
    return f'"{sys.executable}" -m pip install {pip_name}'


def require(module_name):
    """Import and return `module_name`, or raise MissingDependencyError saying how to install it."""
    try:
        return importlib.import_module(module_name)
    except ImportError as error:
        pip_name = PIP_NAMES.get(module_name, module_name)
        raise MissingDependencyError(
            f'This algorithm needs the Python package "{pip_name}", which QGIS\'s Python cannot import '
            f'({error}). Install it into QGIS\'s Python, e.g. with: {install_command(module_name)} '
            '(on Windows run "python -m pip install ..." from the OSGeo4W Shell), then restart QGIS.'
        ) from error
