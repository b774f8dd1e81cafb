"""The method of Tang et al. (2023) in PyTorch, and the trial function that trains it.

Import what you need from the submodules (``trainables.config``, ``trainables.training``…);
this package's ``__init__`` stays import-light so that validating a config does not load torch.
"""

__version__ = "0.1.0"
