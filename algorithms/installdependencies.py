"""Processing glue: list the Python packages the plugin lacks and pip-install the pinned versions
into QGIS's own Python (core/dependencies.py)."""
from qgis.core import (
    QgsProcessingException,
    QgsProcessingOutputBoolean,
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterFolderDestination,
)

from ..core import dependencies
from ..core.errors import CancelledError
from .glue import compat
from .glue.base import RsGeochemAlgorithm

# pip output line starts -> progress (%) reached
PIP_STAGES = (('Collecting', 10.0), ('Downloading', 30.0), ('Installing collected packages', 70.0),
              ('Successfully installed', 95.0))


class InstallDependenciesAlgorithm(RsGeochemAlgorithm):
    ALGORITHM_ID = 'installdependencies'
    DISPLAY_NAME = 'Install Python dependencies'
    GROUP_ID = 'setup'
    TAGS = ('pip', 'install', 'dependencies', 'setup', 'onnxruntime', 'scikit-learn', 'packages')
    HELP = (
        'Installs the Python packages some algorithms need (onnxruntime and onnx for "Apply '
        'inversion model"; also scikit-learn and skl2onnx for "Train inversion model" and the '
        'cluster mode of "Laplacian fusion") into QGIS\'s own Python, in the versions this plugin '
        'is tested with. Run it once after installing the plugin; it needs internet access to PyPI '
        '(or a pip mirror) and takes a few minutes. The log shows what is missing and pip\'s '
        'progress; Cancel stops pip.\n'
        'Packages go into your user site-packages (no administrator rights needed); numpy, scipy '
        'and the other packages QGIS already has are kept at their versions. A package you already '
        'have in another version is left as it is (the log says so). Restart QGIS when the result '
        'says so.')
    CHECK_ONLY = 'CHECK_ONLY'
    TARGET_FOLDER = 'TARGET_FOLDER'
    MISSING = 'MISSING'
    INSTALLED = 'INSTALLED'
    RESTART_NEEDED = 'RESTART_NEEDED'

    def flags(self):
        # installs into QGIS itself: a setup step, not a step of a workflow
        return super().flags() | compat.ALGORITHM_HIDE_FROM_MODELER

    def shortHelpString(self):  # noqa: N802 - QGIS API
        missing = [requirement.name for requirement in dependencies.runtime_requirements()
                   if dependencies.installed_version(requirement.name) is None]
        now = (f'Missing in this QGIS now: {", ".join(missing)}.' if missing
               else 'Every package is installed in this QGIS.')
        return self.tr(self.HELP) + '\n' + self.tr(now)

    def initAlgorithm(self, config=None):  # noqa: N802 - QGIS API
        self.add(QgsProcessingParameterBoolean(self.CHECK_ONLY, self.tr('Only list what is missing'), False),
                 'Report the missing packages and the install command in the log, install nothing.')
        self.add(QgsProcessingParameterFolderDestination(
            self.TARGET_FOLDER, self.tr('Install into this folder instead'), optional=True,
            createByDefault=False),
            'Leave empty to install for QGIS. A folder here gets the packages instead (pip --target), '
            'e.g. to copy them to a machine without internet; QGIS uses them only with that folder on '
            'its PYTHONPATH.', advanced=True)
        self.addOutput(QgsProcessingOutputString(self.MISSING, self.tr('Packages that were missing')))
        self.addOutput(QgsProcessingOutputString(self.INSTALLED, self.tr('Packages installed')))
        self.addOutput(QgsProcessingOutputBoolean(self.RESTART_NEEDED, self.tr('Restart QGIS needed')))

    def execute(self, parameters, context, feedback):
        requirements = dependencies.runtime_requirements()
        missing = []
        for requirement in requirements:
            version = dependencies.installed_version(requirement.name)
            if not dependencies.importable(requirement.module):
                missing.append(requirement)
                feedback.pushInfo(f'{requirement.name}: missing (installing {requirement.version})')
            elif version != requirement.version:
                feedback.pushInfo(f'{requirement.name}: {version} installed, kept (tested with '
                                  f'{requirement.version})')
            else:
                feedback.pushInfo(f'{requirement.name}: {version} installed')
        result = {self.MISSING: ', '.join(requirement.name for requirement in missing),
                  self.INSTALLED: '', self.RESTART_NEEDED: False}
        if not missing:
            feedback.pushInfo('Nothing to install: every package the plugin uses is there.')
            return result
        if self.parameterAsBoolean(parameters, self.CHECK_ONLY, context):
            feedback.pushInfo(f'To install them run this algorithm without "Only list what is missing", '
                              f'or {dependencies.install_command(missing)}.')
            return result

        target = self.parameterAsString(parameters, self.TARGET_FOLDER, context)
        try:
            status, output = dependencies.install(missing, target, self.pip_line(feedback),
                                                  feedback.isCanceled)
        except CancelledError as error:
            raise QgsProcessingException(self.tr('Cancelled: pip was stopped. Packages it had already '
                                                 'installed stay installed.')) from error
        if status != 0:
            raise QgsProcessingException(dependencies.pip_failure(status, output))
        result[self.INSTALLED] = result[self.MISSING]
        if target:
            feedback.pushInfo(f'Installed into {target}: add that folder to QGIS\'s PYTHONPATH to use them.')
        else:
            result[self.RESTART_NEEDED] = not dependencies.usable_now(missing)
            feedback.pushInfo('Installed. ' + ('Restart QGIS to use them.' if result[self.RESTART_NEEDED]
                                               else 'They work now: no restart needed.'))
        feedback.setProgress(100)
        return result

    @staticmethod
    def pip_line(feedback):
        """Callable for each pip output line: shown in the log, and moves the progress bar on."""
        def show(line):
            feedback.pushConsoleInfo(line)
            for start, percent in PIP_STAGES:
                if line.startswith(start) and feedback.progress() < percent:
                    feedback.setProgress(percent)
        return show
