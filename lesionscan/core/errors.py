"""Errors that users cause and can fix; the CLI prints them without a traceback."""

import os
import sys

DEBUG_VARIABLE = "LESIONSCAN_DEBUG"


def debug_requested(argv: list[str] | None = None) -> bool:
    """Whether the user asked for whole tracebacks: ``--debug`` among the arguments, or ``LESIONSCAN_DEBUG`` set."""
    argv = sys.argv[1:] if argv is None else argv
    return "--debug" in argv or os.environ.get(DEBUG_VARIABLE, "").lower() not in ("", "0", "false", "no")


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
