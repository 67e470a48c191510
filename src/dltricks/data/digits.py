"""scikit-learn's bundled 8x8 handwritten digits (1797 images, no download)."""

from __future__ import annotations

import numpy as np

from dltricks.data.splits import stratified_split

__all__ = ["DIGITS_TEST_FRACTION", "DIGITS_TEST_SEED", "digits_arrays"]

#: The test split is fixed (independent of the caller's seed) so that test numbers across
#: seeds measure training variability on one and the same held-out set.
DIGITS_TEST_FRACTION = 0.2
DIGITS_TEST_SEED = 20260101


def digits_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(x_train, y_train, x_test, y_test)``: float64 pixels in [0, 16], int64 labels.

    The test set is a stratified 20% (359 images) drawn with a fixed seed.
    """
    # Imported here: scikit-learn takes seconds to import, and most users of dltricks.data
    # (the lab, the playground's start-up) never load the digits.
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    train_idx, test_idx = stratified_split(y, DIGITS_TEST_FRACTION, DIGITS_TEST_SEED)
    return x[train_idx], y[train_idx], x[test_idx], y[test_idx]
