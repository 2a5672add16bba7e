"""Print the README's algorithm table from the provider (test/test_readme.py keeps them equal)."""
import os
import sys
import tempfile
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parent.parent


def first_sentence(text):
    text = ' '.join(text.split())
    return text.split('. ')[0].rstrip('.') + '.' if text else ''


def markdown_table(algorithms):
    rows = ['| group | id | name | does |', '|---|---|---|---|']
    for algorithm in sorted(algorithms, key=lambda a: (a.group(), a.name())):
        rows.append(f'| {algorithm.group()} | `{algorithm.id()}` | {algorithm.displayName()} | '
                    f'{first_sentence(algorithm.shortHelpString())} |')
    return '\n'.join(rows)


def algorithm_table():
    folder = Path(tempfile.mkdtemp(prefix='rsgeochem-table-'))
    (folder / 'rsgeochem').symlink_to(CHECKOUT, target_is_directory=True)
    sys.path.insert(0, str(folder))
    sys.path.append('/usr/share/qgis/python/plugins')
    os.environ.setdefault('QT_QPA_PLATFORM', 'offscreen')
    from qgis.core import QgsApplication
    app = QgsApplication([], False)
    app.initQgis()
    from rsgeochem.algorithms.provider import RsGeochemProvider
    provider = RsGeochemProvider()
    QgsApplication.processingRegistry().addProvider(provider)
    return markdown_table(provider.algorithms())


if __name__ == '__main__':
    print(algorithm_table())
