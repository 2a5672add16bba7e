"""Errors raised by core code; the Processing glue turns them into QgsProcessingException."""


class InputError(ValueError):
    """Bad user input. `parameter` names the Processing parameter key at fault (or None)."""

    def __init__(self, message, parameter=None):
        super().__init__(message)
        self.parameter = parameter

    def __str__(self):
        message = super().__str__()
        return f'{self.parameter}: {message}' if self.parameter else message


class MissingDependencyError(ImportError):
    """A Python package the algorithm needs is not installed in QGIS's Python."""


class CancelledError(RuntimeError):
    """The user cancelled the run."""
