"""The README cannot drift: its algorithm table equals the provider's, and its qgis_process
block runs as printed."""
import importlib.util
import os
import subprocess

from paths import CHECKOUT

README = (CHECKOUT / 'README.md').read_text(encoding='utf-8')


def between(text, name):
    return text.split(f'<!-- {name}:begin -->', 1)[1].split(f'<!-- {name}:end -->', 1)[0].strip()


def test_algorithm_table_matches_provider(qgis_app):
    from qgis.core import QgsApplication
    script = CHECKOUT / 'scripts' / 'algorithm_table.py'
    spec = importlib.util.spec_from_file_location('algorithm_table', script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    provider = QgsApplication.processingRegistry().providerById('rsgeochem')
    expected = module.markdown_table(provider.algorithms())
    assert between(README, 'algorithm-table') == expected, f'paste into README.md:\n{expected}'


def test_qgis_process_block_runs_as_printed(tmp_path):
    block = between(README, 'qgis_process-example')
    script = block.removeprefix('```bash').removesuffix('```')
    env = {key: value for key, value in os.environ.items() if not key.startswith('QGIS_')}
    env['TMPDIR'] = str(tmp_path)
    result = subprocess.run(['bash', '-euo', 'pipefail', '-c', script], cwd=CHECKOUT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'rsgeochem:' in result.stdout
    outputs = list(tmp_path.rglob('*.tif'))
    assert outputs, result.stdout
