"""Paths shared by tests; importing this makes the checkout importable as `rsgeochem`."""
import sys
import tempfile
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parent.parent
TEST_DATA = CHECKOUT / 'test' / 'data'
PLUGIN_PATH = Path(tempfile.mkdtemp(prefix='rsgeochem-plugins-'))
(PLUGIN_PATH / 'rsgeochem').symlink_to(CHECKOUT, target_is_directory=True)
sys.path.insert(0, str(PLUGIN_PATH))
