"""The checkout importable as the package `rsgeochem` for the scripts (the checkout folder has
another name): a symlink in a temporary folder, which also serves as QGIS_PLUGINPATH. The folder is
removed when the block ends, however it ends (rmtree unlinks the symlink, never the checkout)."""
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parent.parent


@contextmanager
def plugin_package(prefix='rsgeochem-script-'):
    """Yields the folder holding the `rsgeochem` symlink, first on sys.path while the block runs."""
    with tempfile.TemporaryDirectory(prefix=prefix) as folder:
        (Path(folder) / 'rsgeochem').symlink_to(CHECKOUT, target_is_directory=True)
        sys.path.insert(0, folder)
        try:
            yield Path(folder)
        finally:
            sys.path.remove(folder)
