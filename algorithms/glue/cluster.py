"""The provider setting "Dask scheduler address": when it is set (or the environment variable of
the same name, which wins, e.g. for one qgis_process run), the block-wise steps run tile by tile
on that Dask cluster (core/distributed); empty runs them in QGIS as always."""
import os

from qgis.core import QgsSettings

from ...core.distributed.runner import SCHEDULER_SETTING, ClusterRun

SETTING_KEY = f'Processing/Configuration/{SCHEDULER_SETTING}'
SETTING_LABEL = 'Dask scheduler address (empty = run locally)'
CLUSTER_HELP = (
    '\n\nProvince scale: with the provider setting "Dask scheduler address" (Processing > Options > '
    'Providers > RS Geochem Inversion) set, e.g. to tcp://host:8786, this step runs tile by tile on '
    'that Dask cluster with the same result. Every input and output path must then be visible to '
    'every worker under the same name (a shared file system, or /vsis3/ style paths for inputs); a '
    'restarted run reuses the tiles of an interrupted one (the folder named after the output with '
    '".tiles" added).')


def scheduler_address():
    value = os.environ.get(SCHEDULER_SETTING) or QgsSettings().value(SETTING_KEY, '') or ''
    return str(value).strip()


def cluster_run(feedback, progress, cancel):
    """A ClusterRun for core.distributed.steps when a scheduler is set, else None (run locally)."""
    address = scheduler_address()
    if not address:
        return None
    feedback.pushInfo(f'Running tile by tile on the Dask cluster at {address}.')
    return ClusterRun(address, progress=progress, cancel=cancel)
