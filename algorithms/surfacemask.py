"""Keep/mask raster of vegetation, open water and excluded polygons."""
from qgis.core import (
    QgsProcessingOutputNumber,
    QgsProcessingParameterBand,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
)

from ..core.distributed import steps
from ..core.errors import InputError
from ..core.imagery.mask import PolygonBurner, write_surface_mask
from ..core.raster.blockio import raster_info
from .glue import compat, styles
from .glue.base import RsGeochemAlgorithm, name_output_layer, progress_callbacks, raster_path
from .glue.cluster import cluster_run
from .glue.mask_input import polygon_wkts

FRACTIONS = ('MASKED_FRACTION', 'VEGETATION_FRACTION', 'WATER_FRACTION', 'POLYGON_FRACTION')


class SurfaceMaskAlgorithm(RsGeochemAlgorithm):
    INPUT = 'INPUT'
    RED_BAND = 'RED_BAND'
    NIR_BAND = 'NIR_BAND'
    GREEN_BAND = 'GREEN_BAND'
    MASK_VEGETATION = 'MASK_VEGETATION'
    NDVI_THRESHOLD = 'NDVI_THRESHOLD'
    MASK_WATER = 'MASK_WATER'
    NDWI_THRESHOLD = 'NDWI_THRESHOLD'
    NIR_WATER_THRESHOLD = 'NIR_WATER_THRESHOLD'
    EXCLUDE_POLYGONS = 'EXCLUDE_POLYGONS'
    ALL_TOUCHED = 'ALL_TOUCHED'
    OUTPUT = 'OUTPUT'

    ALGORITHM_ID = 'surfacemask'
    DISPLAY_NAME = 'Surface mask (vegetation, water, buildings)'
    GROUP_ID = 'imagecorrection'
    RUNS_ON_CLUSTER = True
    TAGS = ('mask', 'NDVI', 'NDWI', 'NIR', 'vegetation', 'water', 'buildings', 'villages', 'false anomalies')
    HELP = (
        'Masks the pixels that are not bare soil or rock - vegetation, open water, villages and buildings '
        '- which give false contents and false anomalies (Cheng et al. 2023 name vegetation and buildings '
        'as the limits of their method).\n'
        'Use it on surface reflectance (from "Dark object subtraction") and give its output as the Mask of '
        'the later steps ("Surface-to-surface sample set", "Apply inversion model", "High-anomaly areas", '
        '"Principal components"). Give the Multispectral raster and check the band numbers (defaults: GF-2 '
        'PMS order, green 2, red 3, NIR 4; Sentinel-2 12-band L2A: 3, 4, 8; Landsat 8/9: 3, 4, 5; ASTER: '
        '1, 2, 3); optionally Polygons to exclude (villages, buildings, ponds). Thresholds depend on the '
        'scene: check the masked fractions in the log and adjust.\n'
        'Output: a byte raster on the input grid, 1 = keep, 0 = masked, 255 = nodata where the input has '
        'no data; loaded with masked pixels in grey and kept pixels transparent. The masked fractions are '
        'logged and returned as numbers.\n'
        'Method details. Vegetation: NDVI = (NIR - red)/(NIR + red) above the NDVI threshold (Rouse et al. '
        '1974). Water: NDWI = (green - NIR)/(green + NIR) above the NDWI threshold (McFeeters 1996) or, '
        'when Water: NIR below is above 0, a NIR darker than it (water absorbs the near infrared; turbid, '
        'sediment-laden rivers can have an NDWI below 0). Polygons: every pixel a polygon touches (or, '
        'unticking Mask every pixel a polygon touches, whose centre it holds); polygons in another CRS are '
        'reprojected (the log says so). Use reflectance for thresholds that carry between scenes.')

    def initAlgorithm(self, config=None):
        self.add(QgsProcessingParameterRasterLayer(self.INPUT, self.tr('Multispectral raster')),
                 'Multiband raster (reflectance preferred); its grid is the mask grid.')
        for key, label, default in ((self.GREEN_BAND, 'Green band', 2), (self.RED_BAND, 'Red band', 3),
                                    (self.NIR_BAND, 'Near-infrared band', 4)):
            self.add(QgsProcessingParameterBand(key, self.tr(label), default, self.INPUT, optional=True),
                     f'{label} of the input (default: GF-2 PMS band {default}). Needed for NDVI (red, NIR) '
                     'and NDWI (green, NIR).')
        self.add(QgsProcessingParameterBoolean(self.MASK_VEGETATION, self.tr('Mask vegetation'), True),
                 'Mask pixels whose NDVI exceeds the NDVI threshold.')
        self.add(QgsProcessingParameterNumber(self.NDVI_THRESHOLD, self.tr('NDVI threshold'),
                                              QgsProcessingParameterNumber.Type.Double, 0.3, False, -1.0,
                                              1.0),
                 'Pixels with NDVI above this value (unitless, -1..1) are vegetation. 0.2-0.3 separates '
                 'green vegetation from bare soil in most reflectance images.')
        self.add(QgsProcessingParameterBoolean(self.MASK_WATER, self.tr('Mask open water'), True),
                 'Mask pixels whose NDWI exceeds the NDWI threshold (or whose NIR is below the Water: NIR '
                 'below threshold, when that is above 0).')
        self.add(QgsProcessingParameterNumber(self.NDWI_THRESHOLD, self.tr('NDWI threshold'),
                                              QgsProcessingParameterNumber.Type.Double, 0.0, False, -1.0,
                                              1.0),
                 'Pixels with McFeeters NDWI above this value (unitless, -1..1) are open water; 0 is the '
                 'published threshold.')
        self.add(QgsProcessingParameterNumber(self.NIR_WATER_THRESHOLD, self.tr('Water: NIR below (0 = off)'),
                                              QgsProcessingParameterNumber.Type.Double, 0.0, False, 0.0),
                 'Optional second water rule (with Mask open water): pixels whose NIR value is below this '
                 'are water too, whatever their NDWI. Same unit as the NIR band, e.g. surface reflectance '
                 '0.05-0.08 catches turbid rivers that NDWI > 0 misses (clear water reflects below 0.05 in '
                 'the NIR, soil and vegetation well above 0.1). 0 (default) switches the rule off.')
        self.add(QgsProcessingParameterFeatureSource(
            self.EXCLUDE_POLYGONS, self.tr('Polygons to exclude (villages, buildings, ponds)'),
            [compat.SOURCE_POLYGONS], optional=True),
            'Optional polygon layer of surfaces that give false anomalies; every pixel under a polygon is '
            'masked. Any CRS: polygons are reprojected to the raster CRS.')
        self.add(QgsProcessingParameterBoolean(
            self.ALL_TOUCHED, self.tr('Mask every pixel a polygon touches'), True),
                 'On: every pixel a polygon touches is masked (conservative, suits small buildings). Off: '
                 'only pixels whose centre lies inside a polygon.', advanced=True)
        self.add(QgsProcessingParameterRasterDestination(self.OUTPUT, self.tr('Surface mask')),
                 'Byte GeoTIFF: 1 keep, 0 masked, 255 nodata.')
        self.add_block_memory()
        for key in FRACTIONS:
            self.addOutput(QgsProcessingOutputNumber(key, self.tr(key.replace('_', ' ').capitalize())))

    def band(self, parameters, key, context, info, needed):
        number = self.parameterAsInt(parameters, key, context)
        if needed and not 1 <= number <= info.band_count:
            raise InputError(f'choose a band of the input (1-{info.band_count}); it is needed for the '
                             'vegetation/water mask.', key)
        return number

    def execute(self, parameters, context, feedback):
        path = raster_path(self, parameters, self.INPUT, context)
        info = raster_info(path, self.INPUT)
        vegetation = self.parameterAsBool(parameters, self.MASK_VEGETATION, context)
        water = self.parameterAsBool(parameters, self.MASK_WATER, context)
        bands = {key: self.band(parameters, key, context, info, needed) for key, needed in (
            (self.RED_BAND, vegetation), (self.NIR_BAND, vegetation or water), (self.GREEN_BAND, water))}
        burner = self.polygons(parameters, context, info, feedback)
        if not (vegetation or water or burner):
            raise InputError('nothing to mask: tick MASK_VEGETATION or MASK_WATER, or give polygons.',
                             self.EXCLUDE_POLYGONS)
        ndvi = self.parameterAsDouble(parameters, self.NDVI_THRESHOLD, context)
        ndwi = self.parameterAsDouble(parameters, self.NDWI_THRESHOLD, context)
        dark_nir = self.parameterAsDouble(parameters, self.NIR_WATER_THRESHOLD, context)
        thresholds = {'ndvi_threshold': ndvi if vegetation else None,
                      'ndwi_threshold': ndwi if water else None,
                      'nir_water_threshold': dark_nir if water and dark_nir > 0 else None}
        output = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        progress, cancel = progress_callbacks(feedback)
        bands = {name: bands[key] for name, key in (
            ('red', self.RED_BAND), ('nir', self.NIR_BAND), ('green', self.GREEN_BAND))}
        memory_mb = self.block_memory(parameters, context)
        run = cluster_run(feedback, progress, cancel)
        if run is not None:
            total = steps.surface_mask(run, path, output, bands, thresholds, burner, memory_mb)
        else:
            total = write_surface_mask(path, output, bands, thresholds, burner, memory_mb, progress, cancel,
                                       self.INPUT)
        results = {self.OUTPUT: output}
        masked = [name for name, used in (('water', water), ('vegetation', vegetation), ('polygons', burner))
                  if used]
        name_output_layer(context, output, f'Surface mask ({", ".join(masked)} masked)', styles.keep_mask())
        for key, name in zip(FRACTIONS, ('masked', 'vegetation', 'water', 'polygons')):
            results[key] = total.fraction(name)
            feedback.pushInfo(f'{name}: {getattr(total, name)} of {total.valid} valid pixels '
                              f'({100 * results[key]:.2f}%)')
        return results

    def polygons(self, parameters, context, info, feedback):
        source = self.parameterAsSource(parameters, self.EXCLUDE_POLYGONS, context)
        if source is None:
            return None
        wkts = polygon_wkts(source, info.grid.crs_wkt, context, feedback, self.EXCLUDE_POLYGONS)
        feedback.pushInfo(f'{len(wkts)} polygons to exclude.')
        return PolygonBurner(wkts, info.grid.crs_wkt,
                             self.parameterAsBool(parameters, self.ALL_TOUCHED, context))
