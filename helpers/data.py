"""Offline datasets: scikit-learn's handwritten digits with a fixed split, and the course paths.

Taught in 02_affine (weights of the CNN trained on it) and used from 05 onwards.
Nothing here downloads anything.
"""

from __future__ import annotations

import pathlib
from typing import NamedTuple

import numpy as np
import torch

from helpers._validate import check_int

__all__ = ["DATA_DIR", "REPO_ROOT", "DigitsSplit", "load_digits_split", "digits_loader"]

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
DATA_DIR = REPO_ROOT / "data"

#: The split is part of the course: change it and every committed accuracy changes.
DIGITS_SEED = 0
DIGITS_TEST_FRACTION = 0.25


class DigitsSplit(NamedTuple):
    """Train/test tensors of the 8×8 digits: images ``(N, 1, 8, 8)`` float32 in [0, 1], labels int64."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def load_digits_split(seed: int = DIGITS_SEED) -> DigitsSplit:
    """The 1,797 scikit-learn digits, scaled to [0, 1], split 75/25 stratified with ``seed``.

    The default seed gives the course's fixed split (1,347 train / 450 test images).
    Taught in 05_static.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    seed = check_int(seed, "seed", lo=0, hi=2**32 - 1)
    digits = load_digits()
    images = (digits.images.astype(np.float32) / 16.0)[:, None, :, :]
    labels = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        images, labels, test_size=DIGITS_TEST_FRACTION, random_state=seed, stratify=labels
    )
    return DigitsSplit(torch.from_numpy(x_tr), torch.from_numpy(y_tr), torch.from_numpy(x_te), torch.from_numpy(y_te))


def digits_loader(
    x: torch.Tensor, y: torch.Tensor, batch_size: int = 64, *, shuffle: bool = False, seed: int = 0
) -> torch.utils.data.DataLoader:
    """A DataLoader over ``(x, y)``; shuffling uses its own seeded generator, so it is reproducible."""
    batch_size = check_int(batch_size, "batch_size", lo=1)
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError("x and y must be torch.Tensors")
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"x and y must be non-empty and the same length, got {len(x)} and {len(y)}")
    generator = torch.Generator().manual_seed(seed)
    dataset = torch.utils.data.TensorDataset(x, y)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator)
