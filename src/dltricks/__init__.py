"""dltricks: the tricks that make deep networks train.

Composable ``torch.optim`` optimizers (``dltricks.optim``), activations with their
initialisations (``dltricks.nn``), vanishing-gradient diagnostics (``dltricks.diagnose``),
a trainer with early stopping, regularization and dropout (``dltricks.train``), and a lab of
reproducible experiments (``dltricks.lab``).
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
