"""LesionScan: a reproducible study of the Deep-Lesion Scan report on HAM10000."""

from lesionscan.core.classes import CLASSES, CLASS_NAMES

__version__ = "0.1.0"
__all__ = ["CLASSES", "CLASS_NAMES", "__version__"]
