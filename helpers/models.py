"""The small digits CNN, its deterministic training loop, and loading the shipped checkpoint.

Run ``python -m helpers.models`` to retrain and rewrite ``data/digits_cnn.safetensors``
(deterministic: the same seed gives the same weights and the same accuracy on this setup).
Taught in 02_affine (its weights) and 05_static / 06_qat (quantizing it).
"""

from __future__ import annotations

import pathlib
import time
from collections.abc import Callable

import torch
from torch import nn

from helpers._validate import check_int
from helpers.data import DATA_DIR, digits_loader, load_digits_split

__all__ = [
    "DigitsCNN",
    "CHECKPOINT",
    "load_digits_cnn",
    "evaluate",
    "train_epochs",
    "train_digits_cnn",
    "seed_everything",
    "model_dtype",
    "as_model_dtype",
]

CHECKPOINT = DATA_DIR / "digits_cnn.safetensors"


def seed_everything(seed: int = 0) -> None:
    """Seed Python, NumPy and torch, so a lesson's random numbers repeat run after run."""
    import random

    import numpy as np

    seed = check_int(seed, "seed", lo=0, hi=2**32 - 1)
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - seeds code that still uses the legacy global generator
    torch.manual_seed(seed)


class DigitsCNN(nn.Module):
    """A 3-conv CNN for 8×8 digits (≈40k parameters): conv-BN-ReLU ×3 with two max-pools, then an MLP head.

    ``features`` holds ``[Conv2d, BatchNorm2d, ReLU]`` triples at indices 0-2, 3-5 and 7-9 (6 and 10
    are max-pools), so eager-mode fusion names are ``features.0/1/2``, ``features.3/4/5`` and
    ``features.7/8/9``; ``classifier`` is ``Flatten, Linear(256, 64), ReLU, Linear(64, 10)``.
    ``dtype`` (keyword, default float32) is the dtype the parameters are created and initialised in.
    """

    def __init__(self, *, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise TypeError(f"dtype must be a floating-point torch.dtype or None, got {dtype!r}")
        kw = {"dtype": dtype}
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1, bias=False, **kw),
            nn.BatchNorm2d(16, **kw),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1, bias=False, **kw),
            nn.BatchNorm2d(32, **kw),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1, bias=False, **kw),
            nn.BatchNorm2d(64, **kw),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(256, 64, **kw), nn.ReLU(), nn.Linear(64, 10, **kw))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def model_dtype(model: nn.Module) -> torch.dtype | None:
    """The dtype of ``model``'s first floating-point parameter (``None`` if it has none, e.g. an int8 model).

    ``evaluate``, ``train_epochs`` and ``helpers.qat.calibrate`` cast float inputs to it, so a model
    moved to float64 (``model.to(torch.float64)``, exact for float32 weights) trains and evaluates
    in float64 on the float32 images (also exact). Taught in 06_qat.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return None


def as_model_dtype(x: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """``x`` cast to ``model_dtype(model)`` when both are floating point and differ; otherwise ``x`` itself."""
    dtype = model_dtype(model)
    if dtype is None or not x.is_floating_point() or x.dtype == dtype:
        return x
    return x.to(dtype)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512) -> float:
    """Top-1 accuracy in percent of ``model`` on ``(x, y)``; puts the model in eval mode.

    Float images are cast to the model's float dtype first (``model_dtype``): a float64 model
    is evaluated in float64.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError("x and y must be torch.Tensors")
    if len(x) == 0 or len(x) != len(y):
        raise ValueError(f"x and y must be non-empty and the same length, got {len(x)} and {len(y)}")
    batch_size = check_int(batch_size, "batch_size", lo=1)
    x = as_model_dtype(x, model)
    model.eval()
    correct = 0
    for start in range(0, len(x), batch_size):
        logits = model(x[start : start + batch_size])
        correct += int((logits.argmax(dim=1) == y[start : start + batch_size]).sum())
    return 100.0 * correct / len(x)


def train_epochs(
    model: nn.Module,
    epochs: int,
    *,
    lr: float = 0.01,
    batch_size: int = 64,
    seed: int = 0,
    data=None,
    on_epoch_end: Callable[[nn.Module, int], None] | None = None,
    verbose: bool = False,
) -> list[float]:
    """Train ``model`` on the digits for ``epochs`` with seeded Adam + cosine schedule; test accuracy per epoch.

    Deterministic: shuffling uses its own seeded generator. ``on_epoch_end(model, epoch)`` runs
    after each epoch before evaluation (e.g. to freeze BN or observers during QAT).
    The images are cast to the model's float dtype (``model_dtype``): a float64 model trains in
    float64, whose trajectory does not hinge on the kernels' float32 summation order.
    Taught in 06_qat.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    epochs = check_int(epochs, "epochs", lo=1, hi=1000)
    if not (isinstance(lr, float) and lr > 0):
        raise ValueError(f"lr must be a float > 0, got {lr!r}")
    split = data if data is not None else load_digits_split()
    x_train, x_test = as_model_dtype(split.x_train, model), as_model_dtype(split.x_test, model)
    loader = digits_loader(x_train, split.y_train, batch_size, shuffle=True, seed=seed)
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * len(loader))
    loss_fn = nn.CrossEntropyLoss()
    history = []
    for epoch in range(epochs):
        model.train()
        for xb, yb in loader:
            opt.zero_grad()
            loss_fn(model(xb), yb).backward()
            opt.step()
            sched.step()
        if on_epoch_end is not None:
            on_epoch_end(model, epoch)
        acc = evaluate(model, x_test, split.y_test)
        history.append(acc)
        if verbose:
            print(f"epoch {epoch + 1:2d}  test accuracy {acc:.2f}%")
    return history


def train_digits_cnn(
    epochs: int = 20, seed: int = 0, verbose: bool = True, *, dtype: torch.dtype = torch.float32
) -> tuple[DigitsCNN, list[float]]:
    """A freshly initialised ``DigitsCNN`` trained for ``epochs``; returns the model and accuracy per epoch.

    ``dtype`` is the dtype the model is initialised and trained in, e.g. ``torch.float64`` for a
    run that is the same on every CPU (float32 initialisation itself differs in the last bit
    between CPUs: ``uniform_`` contracts to an FMA on some).
    """
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
    torch.manual_seed(seed)
    model = DigitsCNN(dtype=dtype)
    history = train_epochs(model, epochs, lr=0.01, seed=seed, verbose=verbose)
    return model.eval(), history


def load_digits_cnn(path: str | pathlib.Path | None = None) -> DigitsCNN:
    """The trained ``DigitsCNN`` from the shipped safetensors checkpoint, in eval mode.

    Raises ``FileNotFoundError`` with the command that recreates the file if it is missing.
    """
    from safetensors.torch import load_file

    path = pathlib.Path(path) if path is not None else CHECKPOINT
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} not found; create it with `python -m helpers.models`")
    model = DigitsCNN()
    model.load_state_dict(load_file(str(path)))
    return model.eval()


def main() -> None:
    """Retrain the digits CNN deterministically and write the checkpoint to ``data/``."""
    from safetensors.torch import save_file

    torch.set_num_threads(2)
    start = time.perf_counter()
    model, history = train_digits_cnn()
    elapsed = time.perf_counter() - start
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(CHECKPOINT))
    print(f"trained {len(history)} epochs in {elapsed:.1f} s; fp32 test accuracy {history[-1]:.2f}%")
    print(f"wrote {CHECKPOINT.relative_to(DATA_DIR.parent)}")


if __name__ == "__main__":
    main()
