"""The shipped .model3 workflows as Processing models with the algorithms' safeguards: every
number and destination of the whole workflow is checked before its first step runs (a bad file
name for the last step's output no longer fails after the first steps have written theirs), QGIS's
refusals get a reason, and when a step fails the log lists the outputs the steps before it wrote
(QGIS keeps them)."""
import os

from qgis.core import QgsProcessingException, QgsProcessingModelAlgorithm

from ...core.errors import InputError
from .checks import check_parameters, destination_path, explain_invalid

# toolbox names of the shipped workflows: a model's display name is its model name, which is also its
# id (rsgeochem:<name>) and must stay, so the readable name is given here
WORKFLOW_NAMES = {
    'rareearthinversion': 'Rare-earth inversion workflow (image + samples → content map, anomalies)',
    'geochemfusion': 'Geochemical fusion workflow (coarse survey + image → fine map, anomalies)',
}


class Workflow(QgsProcessingModelAlgorithm):

    def displayName(self):  # noqa: N802 - QGIS API
        return WORKFLOW_NAMES.get(self.name(), self.name())

    def createInstance(self):  # noqa: N802 - QGIS API
        instance = Workflow()  # as QgsProcessingModelAlgorithm::createInstance, of this class
        instance.loadVariant(self.toVariant())
        instance.setSourceFilePath(self.sourceFilePath())
        return instance

    def checkParameterValues(self, parameters, context):  # noqa: N802 - QGIS API
        accepted, message = super().checkParameterValues(parameters, context)
        if accepted:
            return accepted, message
        return accepted, explain_invalid(self, parameters, context) or message

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 - QGIS API
        try:
            check_parameters(self, parameters, context, feedback)
        except InputError as error:
            raise QgsProcessingException(str(error)) from error
        before = self.output_files(parameters, context)
        try:
            return super().processAlgorithm(parameters, context, feedback)
        except QgsProcessingException:
            after = self.output_files(parameters, context).items()
            written = [f'{key}: {path}' for key, (path, stamp) in after
                       if stamp is not None and stamp != before[key][1]]
            if written:
                feedback.reportError('The steps before the failure wrote (QGIS keeps them): '
                                     + '; '.join(written), fatalError=False)
            raise

    def output_files(self, parameters, context):
        """{output key: (file path, modification time or None)} of the outputs given as files."""
        files = {}
        for definition in self.destinationParameterDefinitions():
            path = destination_path(self, parameters, definition, context)
            if path and parameters.get(definition.name()) not in (None, 'TEMPORARY_OUTPUT'):
                files[definition.name()] = (path, os.path.getmtime(path) if os.path.exists(path) else None)
        return files
