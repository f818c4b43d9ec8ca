"""Every figure of the book, in one style, in a module per kind of figure.

- ``style``: the look shared by all figures (palette and class colours, fonts,
  ``BookFigure``, the ``book_figure`` decorator every figure function carries,
  ``save_figure``, and small helpers such as wrapped class labels).
- ``dataset``: what the images are: class distribution, metadata by class,
  sample grid, split support, augmentation gallery (chapters 1, 2).
- ``training``: how training went: training curves (chapters 3, 4).
- ``performance``: how well the models classify and how sure we are of it:
  confusion matrix, ROC curves, metric comparison, reliability diagram,
  interval comparison, internal against external (chapters 3 to 5, 7).
- ``explanations``: where the models look: explanation panel, agreement of
  the maps with the lesion masks (chapter 6).
- ``subgroups``: each model by subgroup of the test set, a forest plot of
  intervals (chapter 7; the external test's figures are in ``performance``).

Import the module you need (``from lesionscan.figures import performance``);
nothing is re-exported here, so each figure has one home.
"""
