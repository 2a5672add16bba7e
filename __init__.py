"""QGIS entry point of the RS Geochem Inversion plugin."""


def classFactory(iface):  # noqa: N802 - name required by QGIS
    from .plugin import RsGeochemPlugin
    return RsGeochemPlugin(iface)
