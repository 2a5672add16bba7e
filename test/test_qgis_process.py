"""The plugin headless: qgis_process lists the provider in an isolated profile."""


def test_qgis_process_lists_provider(qgis_process):
    listing = qgis_process('list').stdout
    assert 'RS Geochem Inversion' in listing
