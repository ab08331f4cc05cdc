"""Training of the lowlight models: data (training.data), one trainer (training.trainer), recipes
(training.recipes), figures (training.plots), evaluation and model cards (training.evaluate).

Command line: `python -m training RECIPE [--config cpu|gpu] [--steps N] [--out DIR] [--resume]`
(also `lowlight train`, which calls training.__main__.main(argv)).
"""
