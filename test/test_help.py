"""Help texts a geologist can use: they name parameters by the labels the dialog shows, a key only in
parentheses after it (for qgis_process users) or in a KEY=value example; no "<" that Qt's HTML help
view would swallow as a tag; each starts with what the step does."""
import re

import pytest

KEY_TOKEN = re.compile(r'\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*\b')


def bare_keys(text, keys, labels):
    """Keys in `text` outside parentheses and not in a KEY=value form, unless the word is part of a
    dialog label (e.g. "ESUN" in "Solar irradiance ESUN")."""
    found = []
    for match in KEY_TOKEN.finditer(text):
        word = match.group()
        if word not in keys or any(re.search(rf'\b{word}\b', label) for label in labels):
            continue
        before = text[:match.start()]
        inside_parentheses = before.count('(') > before.count(')')
        if not inside_parentheses and not text[match.end():].startswith('='):
            found.append(word)
    return found


def help_texts(algorithm):
    """(where, text) of the algorithm's help and of each parameter's help."""
    from qgis.core import QgsProcessingModelAlgorithm
    if isinstance(algorithm, QgsProcessingModelAlgorithm):
        return list(algorithm.helpContent().items())
    texts = [('help', algorithm.shortHelpString())]
    texts += [(d.name(), d.help()) for d in algorithm.parameterDefinitions()]
    return texts


@pytest.fixture(scope='module')
def algorithms(qgis_app):
    from qgis.core import QgsApplication
    return QgsApplication.processingRegistry().providerById('rsgeochem').algorithms()


def test_help_names_parameters_by_their_labels(algorithms):
    problems = []
    for algorithm in algorithms:
        definitions = algorithm.parameterDefinitions()
        keys = {d.name() for d in definitions if not d.isDestination()}
        labels = [d.description() for d in definitions]
        for where, text in help_texts(algorithm):
            words = bare_keys(text, keys, labels)
            if words:
                problems.append(f'{algorithm.id()} {where}: {", ".join(sorted(set(words)))}')
    assert not problems, 'bare parameter keys in help texts:\n' + '\n'.join(problems)


def test_bare_key_rule():
    keys, labels = {'MARGIN', 'ESUN', 'BANDS'}, ['Solar irradiance ESUN']
    assert bare_keys('adds MARGIN around', keys, labels) == ['MARGIN']
    assert bare_keys('the Margin (MARGIN), ESUN values, BANDS=3;2;1', keys, labels) == []


def test_no_angle_brackets_in_plain_help(algorithms):
    """Qt shows the help as HTML: "<step>" would vanish (the workflows' help is escaped HTML)."""
    from qgis.core import QgsProcessingModelAlgorithm
    for algorithm in algorithms:
        if isinstance(algorithm, QgsProcessingModelAlgorithm):
            continue
        for where, text in help_texts(algorithm):
            assert '<' not in text, f'{algorithm.id()} {where}'
