"""The plugin version, read from metadata.txt (the one place it is kept)."""
import configparser
from pathlib import Path

PLUGIN_ROOT = Path(__file__).resolve().parent.parent


def plugin_version():
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(PLUGIN_ROOT / 'metadata.txt', encoding='utf-8')
    return parser.get('general', 'version')


def __getattr__(name):
    """VERSION, read when asked (the worker package's build, pyproject.toml, reads it): not at import,
    since a copy of the core sent to Dask workers as a zip has no metadata.txt file to read."""
    if name == 'VERSION':
        return plugin_version()
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
