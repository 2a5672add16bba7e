"""A Dask worker plugin for tests: the worker that starts a task whose key begins with `prefix`
kills its own process (as a crashed machine would), once: the flag file is removed first, so the
re-run on a live worker survives."""
import os
from pathlib import Path

from distributed.diagnostics.plugin import WorkerPlugin


class KillWorkerOnTask(WorkerPlugin):
    name = 'rsgeochem-kill-worker-on-task'

    def __init__(self, prefix, flag):
        self.prefix, self.flag = prefix, str(flag)

    def transition(self, key, start, finish, **kwargs):
        if finish == 'executing' and str(key).startswith(self.prefix) and Path(self.flag).exists():
            os.remove(self.flag)
            os._exit(1)
