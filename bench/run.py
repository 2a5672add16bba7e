"""Run every bench/bench_*.py and write out/bench/<name>.json.

Each benchmark module defines `run(work_dir) -> dict` that measures our code and a baseline in
the same run and returns their numbers with a `ratio` entry (ours vs the baseline), so results
do not depend on how fast this machine is today.
"""
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR.parent / 'scripts'))
from checkout_package import plugin_package  # noqa: E402 - the scripts folder first

OUT_DIR = BENCH_DIR.parent / 'out' / 'bench'


def load(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(names):
    sys.path.insert(0, str(BENCH_DIR))  # bench/measure.py
    with plugin_package('rsgeochem-bench-'):
        run_benchmarks(names)


def run_benchmarks(names):
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    paths = sorted(BENCH_DIR.glob('bench_*.py'))
    if names:
        paths = [p for p in paths if p.stem.removeprefix('bench_') in names]
    summary = {}
    for path in paths:
        print(f'== {path.stem}', flush=True)
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix=f'{path.stem}-') as work_dir:
            result = load(path).run(Path(work_dir))
        result['wall_seconds'] = round(time.perf_counter() - started, 2)
        (OUT_DIR / f'{path.stem}.json').write_text(json.dumps(result, indent=2))
        summary[path.stem] = result
        print(json.dumps(result, indent=2), flush=True)
    (OUT_DIR / 'summary.json').write_text(json.dumps(summary, indent=2))
    print(f'results in {OUT_DIR}')


if __name__ == '__main__':
    main(sys.argv[1:])
