"""Every figure of the book, in one style."""

from lesionscan.figures.plots import *  # noqa: F401,F403  (split by subject next)
from lesionscan.figures.plots import _styled, save_figure  # noqa: F401
