"""Registers the Processing provider with QGIS."""
from qgis.core import QgsApplication

from .algorithms.glue.provider import RsGeochemProvider


class RsGeochemPlugin:
    def __init__(self, iface):
        self.iface = iface
        self.provider = None

    def initProcessing(self):  # noqa: N802 - QGIS hook name
        self.provider = RsGeochemProvider()
        QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self):  # noqa: N802 - QGIS hook name
        self.initProcessing()

    def unload(self):
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
