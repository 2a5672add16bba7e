"""The plugin version, read from metadata.txt (the one place it is kept) when asked, not at import:
a copy of the core sent to Dask workers as a zip has no metadata.txt. pyproject.toml's build calls
plugin_version for the worker package's version."""
import configparser
from pathlib import Path

PLUGIN_ROOT = Path(__file__).resolve().parent.parent


def plugin_version():
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(PLUGIN_ROOT / 'metadata.txt', encoding='utf-8')
    return parser.get('general', 'version')

