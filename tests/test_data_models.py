"""Tests of the shipped data, the digits split, the digits CNN and its training loop."""

import hashlib
import pathlib
import re

import pytest
import torch

from helpers.data import DATA_DIR, digits_loader, load_digits_split
from helpers.models import (
    DigitsCNN,
    as_model_dtype,
    evaluate,
    load_digits_cnn,
    model_dtype,
    seed_everything,
    train_digits_cnn,
    train_epochs,
)


def test_data_checksums_match_readme():
    readme = (DATA_DIR / "README.md").read_text()
    rows = re.findall(r"^\| `([^`]+)` .*\| `([0-9a-f]{64})` \|$", readme, flags=re.M)
    assert rows, "no checksum rows found in data/README.md"
    for name, digest in rows:
        assert hashlib.sha256((DATA_DIR / name).read_bytes()).hexdigest() == digest, name


def test_digits_split_is_fixed_and_scaled():
    a, b = load_digits_split(), load_digits_split()
    assert (len(a.x_train), len(a.x_test)) == (1347, 450)
    assert a.x_train.shape[1:] == (1, 8, 8) and a.x_train.dtype == torch.float32
    assert float(a.x_train.min()) == 0.0 and float(a.x_train.max()) == 1.0
    assert torch.equal(a.x_test, b.x_test) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(load_digits_split(seed=1).y_test, a.y_test)


def test_checkpoint_accuracy():
    split = load_digits_split()
    acc = evaluate(load_digits_cnn(), split.x_test, split.y_test)
    assert acc > 98.0


def test_training_is_deterministic():
    small = load_digits_split()
    runs = []
    for _ in range(2):
        seed_everything(0)
        model = DigitsCNN()
        runs.append((train_epochs(model, 1, seed=3, data=small), model.features[0].weight.clone()))
    assert runs[0][0] == runs[1][0]
    assert torch.equal(runs[0][1], runs[1][1])


def test_float64_model_trains_and_evaluates_on_float32_images():
    d = load_digits_split()
    small = type(d)(d.x_train[:128], d.y_train[:128], d.x_test[:64], d.y_test[:64])
    torch.manual_seed(0)
    m = DigitsCNN(dtype=torch.float64)
    assert model_dtype(m) == torch.float64 and all(p.dtype == torch.float64 for p in m.parameters())
    x = small.x_test
    assert as_model_dtype(x, m).dtype == torch.float64 and torch.equal(as_model_dtype(x, m).float(), x)
    assert as_model_dtype(x, DigitsCNN()) is x
    history = train_epochs(m, 1, seed=0, data=small)
    assert len(history) == 1 and 0.0 <= history[0] <= 100.0
    assert evaluate(m, x, small.y_test) == history[0]
    assert evaluate(load_digits_cnn().double(), d.x_test, d.y_test) == evaluate(load_digits_cnn(), d.x_test, d.y_test)
    assert model_dtype(torch.nn.ReLU()) is None  # no parameters: inputs are left alone


def test_train_digits_cnn_dtype():
    model, history = train_digits_cnn(1, seed=0, verbose=False, dtype=torch.float64)
    assert model_dtype(model) == torch.float64 and len(history) == 1
    with pytest.raises(TypeError, match="dtype"):
        train_digits_cnn(1, dtype=torch.int32)
    with pytest.raises(TypeError, match="dtype"):
        DigitsCNN(dtype="float64")
    torch.manual_seed(0)
    a = DigitsCNN()
    torch.manual_seed(0)
    b = DigitsCNN(dtype=None)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))  # default unchanged


def test_missing_checkpoint_message(tmp_path: pathlib.Path):
    with pytest.raises(FileNotFoundError, match="python -m helpers.models"):
        load_digits_cnn(tmp_path / "nope.safetensors")


def test_bad_inputs():
    split = load_digits_split()
    with pytest.raises(ValueError, match="seed"):
        load_digits_split(seed=-1)
    with pytest.raises(TypeError, match="seed"):
        load_digits_split(seed=1.5)
    with pytest.raises(ValueError, match="batch_size"):
        digits_loader(split.x_test, split.y_test, batch_size=0)
    with pytest.raises(ValueError, match="same length"):
        digits_loader(split.x_test, split.y_test[:3])
    with pytest.raises(TypeError, match="model"):
        evaluate("not a model", split.x_test, split.y_test)
    with pytest.raises(ValueError, match="non-empty"):
        evaluate(DigitsCNN(), split.x_test[:0], split.y_test[:0])
    with pytest.raises(ValueError, match="epochs"):
        train_epochs(DigitsCNN(), 0)
    with pytest.raises(ValueError, match="lr"):
        train_epochs(DigitsCNN(), 1, lr=-1.0)
    with pytest.raises(TypeError, match="model"):
        train_epochs(object(), 1)
