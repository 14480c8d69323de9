"""Recipes: the scripts that own a whole job (train, evaluate a run, cold start, grids, conversion).

A recipe is the only code that reads a :class:`~hstu_blair.config.RunConfig`: it resolves the
device, the dataset (preparing it on demand), the text store (embedding on demand), the model
architecture, the negatives and the evaluation options once, and calls the components (``data``,
``text``, ``models``, ``training``, ``evaluation``) with plain arguments.
"""
