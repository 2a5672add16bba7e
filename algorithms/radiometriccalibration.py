"""Processing glue: DN -> radiance -> TOA reflectance for GF-2, Landsat, Sentinel-2, ASTER, generic."""
from qgis.core import (
    QgsProcessingOutputNumber,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
)

from ..core.distributed import steps
from ..core.imagery.calibration import (
    PLAUSIBLE_REFLECTANCE,
    QUANTITY_LABELS,
    RADIANCE,
    REFLECTANCE,
    band_calibrations,
    band_description,
    calibrate_raster,
    linear_coefficients,
    resolve_geometry,
)
from ..core.imagery.sensor_metadata import parse_date, read_metadata
from ..core.imagery.sensors import parse_list, resolve_band_names, sensor_by_index, sensor_names
from ..core.raster.blockio import raster_info
from .glue import styles
from .glue.base import RsGeochemAlgorithm, name_output_layer, progress_callbacks, raster_path
from .glue.cluster import cluster_run

QUANTITIES = (REFLECTANCE, RADIANCE)   # enum order of QUANTITY: a public contract


class RadiometricCalibrationAlgorithm(RsGeochemAlgorithm):
    ALGORITHM_ID = 'radiometriccalibration'
    DISPLAY_NAME = 'Radiometric calibration (DN to radiance / TOA reflectance)'
    GROUP_ID = 'imagecorrection'
    RUNS_ON_CLUSTER = True
    TAGS = ('radiometric calibration', 'toa reflectance', 'radiance', 'dn', 'gf-2', 'gaofen', 'landsat',
            'sentinel-2', 'aster', 'esun', 'mtl')
    HELP = (
        'Converts the digital numbers (DN) of a satellite image to at-sensor radiance or top-of-atmosphere '
        '(TOA) reflectance, the first correction before any comparison with the ground.\n'
        'Use it on the raw product of GF-2 PMS, Sentinel-2 L1C, Landsat 4-9 or ASTER L1T (or any sensor '
        'with your own coefficients), then run "Dark object subtraction". Give the Image (DN), the Sensor '
        'and the Product metadata file (MTL.txt, MTD XML, GF-2 scene XML) for the date and sun angle. '
        'GF-2: CRESDA publishes the Radiance gains, Radiance offsets and Solar irradiance ESUN per year; '
        'they are not tabulated here, so give them. Values you give (gains, offsets, ESUN, Sun elevation, '
        'Acquisition date) override the metadata file and the tables; where a coefficient is neither '
        'tabulated nor given the algorithm stops and says which to fill.\n'
        'Output: a float32 GeoTIFF, one band per input band, loaded as a natural-colour composite; nodata '
        'pixels (and DN 0, the fill value of these products, unless DN 0 is nodata is unticked) stay '
        'nodata.\n'
        'Method details. Radiance L = gain × DN + offset (W m-2 sr-1 um-1); TOA reflectance = pi × L × d² '
        '/ (ESUN × cos(sun zenith)) (Chander, Markham & Helder 2009, Remote Sens. Environ. 113, 893-903), '
        'd the Earth-Sun distance in AU on the acquisition date, ESUN in W m-2 um-1. Sources '
        '(resources/sensors/*.json, each number with its source): GF-2 PMS1/PMS2 B1-B4: the scene XML '
        'gives the date (CenterTime, else StartTime, else ReceiveTime) and the sun angle (SolarZenith, '
        'else SolarElevation). Landsat 8/9 OLI: everything from the MTL.txt; reflectance equals the USGS '
        'rescaling (REFLECTANCE_MULT × DN + REFLECTANCE_ADD) / sin(sun elevation). Landsat 4/5 TM, 7 ETM+: '
        'gains from the MTL.txt, ESUN from Chander et al. (2009). Sentinel-2 MSI L1C: reflectance = (DN + '
        'RADIO_ADD_OFFSET) / QUANTIFICATION_VALUE from MTD_MSIL1C.xml (without it the processing baseline '
        '04.00 values -1000 and 10000); radiance needs ESUN (SOLAR_IRRADIANCE) and the sun zenith '
        '(GRANULE/*/MTD_TL.xml or Sun elevation). ASTER L1T VNIR/SWIR: L = (DN - 1) × UCC of each band\'s '
        'gain setting (ASTER User Handbook v2, table 5), ESUN of Thome et al. Band descriptions: the '
        'sensor band and the quantity, e.g. "B4 TOA reflectance (unitless)".')

    INPUT = 'INPUT'
    SENSOR = 'SENSOR'
    METADATA = 'METADATA'
    BAND_LIST = 'BAND_LIST'
    GAINS = 'GAINS'
    OFFSETS = 'OFFSETS'
    ESUN = 'ESUN'
    ASTER_GAIN = 'ASTER_GAIN'
    SUN_ELEVATION = 'SUN_ELEVATION'
    DATE = 'DATE'
    QUANTITY = 'QUANTITY'
    ZERO_IS_NODATA = 'ZERO_IS_NODATA'
    OUTPUT = 'OUTPUT'
    USED_SUN_ELEVATION = 'USED_SUN_ELEVATION'
    USED_EARTH_SUN_DISTANCE = 'USED_EARTH_SUN_DISTANCE'

    def initAlgorithm(self, config=None):
        self.add(QgsProcessingParameterRasterLayer(self.INPUT, self.tr('Image (DN)')),
                 'Multiband raster of digital numbers, one band per sensor band (a stack of the '
                 'product\'s band files, e.g. built with gdal:buildvirtualraster "separate").')
        self.add(QgsProcessingParameterEnum(self.SENSOR, self.tr('Sensor'), sensor_names(), defaultValue=0),
                 'Sensor that recorded the image; decides the calibration formula, the band names '
                 'and which metadata file is read.')
        self.add(QgsProcessingParameterFile(
            self.METADATA, self.tr('Product metadata file'), QgsProcessingParameterFile.Behavior.File,
            optional=True),
            'Landsat *_MTL.txt, Sentinel-2 MTD_MSIL1C.xml or the GF-2 scene .xml. Gives gains, '
            'offsets, date and sun elevation where the product has them. Must belong to the Sensor.')
        self.add(QgsProcessingParameterString(self.BAND_LIST, self.tr('Sensor band of each raster band'),
                                              optional=True),
                 'Comma-separated sensor band names in raster band order, e.g. "B2,B3,B4,B5,B6,B7" for '
                 'a Landsat 8 stack without the coastal band. Empty: the sensor\'s natural order '
                 '(GF-2 B1-B4; Landsat 8/9 B1-B7; TM/ETM+ B1-B5,B7; Sentinel-2 B1-B12 with B8A and '
                 'B10; ASTER B1,B2,B3N,B4-B9; Generic B1..Bn).')
        self.add(QgsProcessingParameterString(self.GAINS, self.tr('Radiance gains'), optional=True),
                 'One gain per raster band (W m-2 sr-1 um-1 per DN), comma-separated: L = gain * DN + '
                 'offset. Required for GF-2 (CRESDA\'s coefficients of the acquisition year) and '
                 'Generic; overrides the metadata for the other sensors.')
        self.add(QgsProcessingParameterString(self.OFFSETS, self.tr('Radiance offsets'), optional=True),
                 'One offset per raster band (W m-2 sr-1 um-1), comma-separated; 0 for every band when '
                 'Radiance gains are given without offsets.')
        self.add(QgsProcessingParameterString(self.ESUN, self.tr('Solar irradiance ESUN'), optional=True),
                 'One exo-atmospheric solar irradiance per raster band (W m-2 um-1), comma-separated. '
                 'Required for reflectance from GF-2 and Generic, and for Sentinel-2 radiance without '
                 'metadata; overrides the tables otherwise.')
        self.add(QgsProcessingParameterString(self.ASTER_GAIN, self.tr('ASTER gain settings'),
                                              defaultValue='NOR', optional=True),
                 'ASTER only: gain setting of each band as in the ASTER metadata (HGH, NOR, LO1, LO2), '
                 'comma-separated in raster order, or one setting for every band.', advanced=True)
        self.add(QgsProcessingParameterNumber(
            self.SUN_ELEVATION, self.tr('Sun elevation (degrees, 0 = from metadata)'),
            QgsProcessingParameterNumber.Type.Double, 0.0, True, 0.0, 90.0),
            'Sun elevation angle at acquisition, degrees above the horizon (90 - sun zenith). 0 '
            'reads it from the Product metadata file. Needed for reflectance (and Sentinel-2 radiance).')
        self.add(QgsProcessingParameterString(self.DATE, self.tr('Acquisition date (YYYY-MM-DD)'),
                                              optional=True),
                 'Acquisition date for the Earth-Sun distance. Empty: from the Product metadata file '
                 '(Landsat MTL EARTH_SUN_DISTANCE or DATE_ACQUIRED, Sentinel-2 U, GF-2 CenterTime).')
        self.add(QgsProcessingParameterEnum(self.QUANTITY, self.tr('Output quantity'),
                                            [QUANTITY_LABELS[q] for q in QUANTITIES], defaultValue=0),
                 'TOA reflectance (default) or at-sensor radiance.')
        self.add(QgsProcessingParameterBoolean(self.ZERO_IS_NODATA, self.tr('DN 0 is nodata'), True),
                 'Treat DN 0 as nodata (the fill value of Landsat, Sentinel-2, GF-2 and ASTER '
                 'products) besides the raster\'s own nodata value.', advanced=True)
        self.add(QgsProcessingParameterRasterDestination(self.OUTPUT, self.tr('Calibrated image')),
                 'Float32 GeoTIFF of radiance or TOA reflectance, nodata -9999.')
        self.add_block_memory()
        self.addOutput(QgsProcessingOutputNumber(self.USED_SUN_ELEVATION, self.tr('Sun elevation used')))
        self.addOutput(QgsProcessingOutputNumber(self.USED_EARTH_SUN_DISTANCE,
                                                 self.tr('Earth-Sun distance used (AU)')))

    def execute(self, parameters, context, feedback):
        path = raster_path(self, parameters, self.INPUT, context)
        info = raster_info(path, self.INPUT)
        sensor = sensor_by_index(self.parameterAsEnum(parameters, self.SENSOR, context))
        names = resolve_band_names(sensor, self.parameterAsString(parameters, self.BAND_LIST, context),
                                   info.band_count, self.BAND_LIST)
        metadata_path = self.parameterAsFile(parameters, self.METADATA, context)
        metadata = None
        if metadata_path:
            if sensor.metadata is None:
                feedback.pushWarning(f'{sensor.name} has no metadata reader: METADATA is ignored.')
            else:
                metadata = read_metadata(metadata_path, sensor.metadata, self.METADATA)
        calibrations = band_calibrations(
            sensor, names, metadata,
            gains=parse_list(self.parameterAsString(parameters, self.GAINS, context), self.GAINS),
            offsets=parse_list(self.parameterAsString(parameters, self.OFFSETS, context), self.OFFSETS),
            esun=parse_list(self.parameterAsString(parameters, self.ESUN, context), self.ESUN),
            aster_gains=parse_list(self.parameterAsString(parameters, self.ASTER_GAIN, context).upper(),
                                   self.ASTER_GAIN, str, 'gain setting') if sensor.id == 'aster_l1t' else ())
        date_text = self.parameterAsString(parameters, self.DATE, context).strip()
        sun_elevation = self.parameterAsDouble(parameters, self.SUN_ELEVATION, context)
        geometry = resolve_geometry(metadata, sun_elevation or None,
                                    parse_date(date_text, self.DATE) if date_text else None)
        quantity = QUANTITIES[self.parameterAsEnum(parameters, self.QUANTITY, context)]
        a, b = linear_coefficients(calibrations, quantity, geometry)
        for band, slope, intercept in zip(calibrations, a, b):
            feedback.pushInfo(f'{band.name}: {quantity} = {slope:.8g} * DN + {intercept:.8g} '
                              f'(ESUN {band.esun if band.esun is not None else "n/a"})')
        feedback.pushInfo(f'Sun elevation {geometry.sun_elevation}, Earth-Sun distance '
                          f'{geometry.distance} AU, date {geometry.date}.')

        zero_is_nodata = self.parameterAsBoolean(parameters, self.ZERO_IS_NODATA, context)
        output = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        descriptions = [band_description(band.name, quantity) for band in calibrations]
        progress, cancel = progress_callbacks(feedback)
        memory_mb = self.block_memory(parameters, context)
        run = cluster_run(feedback, progress, cancel)
        if run is not None:
            steps.calibrate(run, path, output, a, b, descriptions, zero_is_nodata, memory_mb)
        else:
            valid, implausible = calibrate_raster(path, output, a, b, descriptions, zero_is_nodata, memory_mb,
                                                  progress, cancel, self.INPUT, quantity == REFLECTANCE)
            if implausible:
                low, high = PLAUSIBLE_REFLECTANCE
                feedback.pushWarning(f'{implausible} of {valid} reflectance values lie outside {low:g} to '
                                     f'{high:g}, which is not physical: check GAINS, OFFSETS, ESUN, '
                                     'SUN_ELEVATION, the sensor and the band order.')
        labels = [band.label.lower() for band in calibrations]
        rgb = [labels.index(colour) + 1 for colour in ('red', 'green', 'blue') if colour in labels]
        title = 'TOA reflectance' if quantity == REFLECTANCE else 'Radiance (W m-2 sr-1 µm-1)'
        name_output_layer(context, output, f'{title} ({sensor.name})',
                          styles.natural_colour(descriptions, rgb if len(rgb) == 3 else None))
        return {self.OUTPUT: output,
                self.USED_SUN_ELEVATION: geometry.sun_elevation,
                self.USED_EARTH_SUN_DISTANCE: geometry.distance}
