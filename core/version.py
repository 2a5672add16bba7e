"""The plugin version, read from metadata.txt (the one place it is kept)."""
import configparser
from pathlib import Path

PLUGIN_ROOT = Path(__file__).resolve().parent.parent


def plugin_version():
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(PLUGIN_ROOT / 'metadata.txt', encoding='utf-8')
    return parser.get('general', 'version')


VERSION = plugin_version()  # for the worker package's build (pyproject.toml reads it)
