"""Print the README's algorithm table from the provider (test/test_readme.py keeps them equal)."""
import os
import re
import sys


def first_sentence(text, limit=180):
    """First sentence of a help text (HTML tags dropped; "e.g." and "et al. 2023" do not end it),
    cut at a word boundary after `limit` characters."""
    text = ' '.join(re.sub(r'<[^>]+>', ' ', text).split())
    match = re.match(r'(.*?[a-z0-9)]{2}\.)\s+[A-Z]', text)
    sentence = match.group(1) if match else text
    if len(sentence) > limit:
        sentence = sentence[:limit].rsplit(' ', 1)[0] + ' ...'
    return sentence.replace('|', '/')


def markdown_table(algorithms):
    rows = ['| group | id | name | does |', '|---|---|---|---|']
    for algorithm in sorted(algorithms, key=lambda a: (a.group(), a.name())):
        rows.append(f'| {algorithm.group()} | `{algorithm.id()}` | {algorithm.displayName()} | '
                    f'{first_sentence(algorithm.shortHelpString())} |')
    return '\n'.join(rows)


def algorithm_table():
    """The table of the algorithms as the provider registers them (`rsgeochem` must be importable)."""
    sys.path.append('/usr/share/qgis/python/plugins')
    os.environ.setdefault('QT_QPA_PLATFORM', 'offscreen')
    from qgis.core import QgsApplication
    app = QgsApplication([], False)
    app.initQgis()
    from rsgeochem.algorithms.glue.provider import RsGeochemProvider
    provider = RsGeochemProvider()
    QgsApplication.processingRegistry().addProvider(provider)
    return markdown_table(provider.algorithms())


if __name__ == '__main__':
    from checkout_package import plugin_package  # scripts/ is on sys.path (the script's folder)
    with plugin_package('rsgeochem-table-'):
        print(algorithm_table())
