"""Errors that users cause and can fix; the CLI prints them without a traceback."""


class LesionScanError(Exception):
    """Base class: a message that names the file, row or parameter and what was expected."""


class DataError(LesionScanError):
    """The dataset on disk is missing, malformed or inconsistent."""


class ParameterError(LesionScanError):
    """A profile, parameter name or parameter value is not valid."""


class ChapterError(LesionScanError):
    """A chapter notebook failed while the study ran."""


class Terminated(KeyboardInterrupt):
    """SIGTERM during a study: stopped from outside, handled as Ctrl-C is (the run is marked interrupted)."""
