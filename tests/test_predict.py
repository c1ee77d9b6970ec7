"""Streaming inference: equality with a direct call, TTA averaging, memory-mapped output,
bounded memory, errors."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from pd4ml.datasets.results import PreparedData
from pd4ml.npyio import allocate_npy, release_rows
from pd4ml.train.predict import PredictError, predict

torch.set_num_threads(1)


class Scorer(torch.nn.Module):
    """A stand-in for a pd4ml Model: reads ``features`` (B, F) and ``neighbours`` (B, K)
    int64; ``predict`` gives probabilities (binary), class probabilities or values."""

    def __init__(self, n_features: int, task: str = "classification", n_classes: int = 2) -> None:
        super().__init__()
        torch.manual_seed(0)
        outputs = n_classes if n_classes > 2 else 1
        self.linear = torch.nn.Linear(n_features, outputs)
        self.dropout = torch.nn.Dropout(0.5)  # would change outputs in training mode
        self.inputs = ("features", "neighbours")
        self.description = SimpleNamespace(task=task, n_outputs=outputs)
        self.calls = 0

    def forward(self, features: torch.Tensor, neighbours: torch.Tensor) -> torch.Tensor:
        assert neighbours.dtype == torch.int64 and features.dtype == torch.float32
        raw = self.linear(self.dropout(features)) + 0.01 * neighbours.sum(-1, keepdim=True)
        return raw.squeeze(-1) if raw.shape[-1] == 1 else raw

    def predict(self, features: torch.Tensor, neighbours: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        raw = self(features, neighbours)
        if self.description.task == "regression":
            return raw
        return torch.sigmoid(raw) if raw.ndim == 1 else torch.softmax(raw, dim=-1)


class Average(torch.nn.Module):
    """A stand-in for an Ensemble: weighted mean of its members' predictions; inputs the union."""

    def __init__(self, members: list[torch.nn.Module], weights: list[float]) -> None:
        super().__init__()
        self.members = torch.nn.ModuleList(members)
        self.register_buffer("weights", torch.tensor(weights))
        names: list[str] = []
        for member in members:
            names += [name for name in member.inputs if name not in names]
        self.inputs = tuple(names)

    def predict(self, *arrays: torch.Tensor) -> torch.Tensor:
        named = dict(zip(self.inputs, arrays, strict=True))
        stacked = torch.stack(
            [member.predict(*(named[n] for n in member.inputs)) for member in self.members]
        )
        return (self.weights[:, None] * stacked).sum(0)


def arrays(n: int = 103, n_features: int = 5) -> dict[str, np.ndarray]:
    generator = np.random.default_rng(1)
    return {
        "features": generator.normal(size=(n, n_features)).astype(np.float32),
        "neighbours": generator.integers(-1, 4, size=(n, 3)).astype(np.int8),
        "missing": generator.random((n, n_features)) < 0.1,
        "labels": generator.integers(0, 2, n),
    }


def direct(model: torch.nn.Module, data: dict[str, np.ndarray]) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        tensors = [torch.from_numpy(data["features"]), torch.from_numpy(data["neighbours"]).long()]
        return model.predict(*tensors).numpy()


def prepared(data: dict[str, np.ndarray]) -> PreparedData:
    return PreparedData(dict(data), {"dataset": "toy", "split": "test"})


def test_equals_a_direct_call_on_all_events_in_batches():
    data = arrays()
    model = Scorer(5)
    model.train()
    expected = direct(model, data)
    model.train()
    for source in (data, prepared(data)):
        got = predict(model, source, batch_size=10)
        assert got.dtype == np.float32 and got.shape == (103,)
        np.testing.assert_array_equal(got, expected)
    assert model.training  # mode restored
    assert all(parameter.grad is None for parameter in model.parameters())


def test_multi_class_and_regression_shapes():
    data = arrays()
    multi = Scorer(5, n_classes=4)
    got = predict(multi, prepared(data), batch_size=16)
    assert got.shape == (103, 4)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(got, direct(multi, data))
    regression = Scorer(5, task="regression", n_classes=0)
    np.testing.assert_array_equal(predict(regression, data), direct(regression, data))


def test_ensemble_stand_in():
    data = arrays()
    ensemble = Average([Scorer(5), Scorer(5, task="regression", n_classes=0)], [0.25, 0.75])
    expected = 0.25 * direct(ensemble.members[0], data) + 0.75 * direct(ensemble.members[1], data)
    np.testing.assert_allclose(predict(ensemble, data, batch_size=32), expected, rtol=1e-6)


def test_float64_inputs_and_read_only_memory_maps(tmp_path):
    data = arrays()
    expected = direct(Scorer(5), data)
    np.save(tmp_path / "features.npy", data["features"].astype(np.float64))
    mapped = {
        "features": np.load(tmp_path / "features.npy", mmap_mode="r"),
        "neighbours": data["neighbours"],
    }
    np.testing.assert_allclose(predict(Scorer(5), mapped, batch_size=50), expected, rtol=1e-6)


class Shifts:
    """Copy k adds k to every feature (k = 0 the identity); counts calls and checks that every
    per-event array is passed."""

    def __init__(self) -> None:
        self.calls = 0
        self.keys: set[str] = set()

    def variants(self, batch, n):
        self.calls += 1
        self.keys = set(batch)
        return [{**batch, "features": batch["features"] + k} for k in range(n)]


@pytest.mark.parametrize("tta", [1, 3, 8])
def test_tta_averages_exactly_tta_copies(tta):
    data = arrays()
    model = Scorer(5, task="regression", n_classes=0)
    augmentation = Shifts()
    # linear: the mean over shifts 0..tta-1 is the prediction shifted by mean(k)·Σw
    weights = model.linear.weight.detach().numpy().sum()
    expected = direct(model, data) + weights * (tta - 1) / 2
    for source in (data, prepared(data)):
        model.calls = augmentation.calls = 0
        got = predict(model, source, tta=tta, augmentation=augmentation, batch_size=25)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
        assert augmentation.calls == 5  # one per batch of 25 among 103 events
        assert model.calls == 5 * tta
        assert {"features", "neighbours", "missing", "labels"} <= augmentation.keys


def test_tta_errors():
    data = arrays()
    with pytest.raises(PredictError, match="tta=2 needs an augmentation"):
        predict(Scorer(5), data, tta=2)
    with pytest.raises(PredictError, match="tta must be"):
        predict(Scorer(5), data, tta=-1)

    class Short:
        def variants(self, batch, n):
            return [batch]

    with pytest.raises(PredictError, match="returned 1 copies, not 4"):
        predict(Scorer(5), data, tta=4, augmentation=Short())
    with pytest.raises(PredictError, match="variants"):
        predict(Scorer(5), data, tta=2, augmentation=object())


def test_output_file_is_memory_mapped_equal_and_atomic(tmp_path):
    data = arrays()
    model = Scorer(5, n_classes=3)
    expected = direct(model, data)
    path = tmp_path / "predictions.npy"
    got = predict(model, prepared(data), output=path, batch_size=20)
    assert isinstance(got, np.memmap) and not got.flags.writeable
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(np.load(path), expected)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["predictions.npy"]

    class Failing(Scorer):
        def predict(self, features, neighbours):
            self.calls += 1
            if self.calls == 3:
                raise RuntimeError("boom")
            return super().predict(features, neighbours)

    with pytest.raises(RuntimeError, match="boom"):
        predict(Failing(5, n_classes=3), data, output=path, batch_size=20)
    np.testing.assert_array_equal(np.load(path), expected)  # the old file untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["predictions.npy"]  # no temporary


def test_no_events():
    empty = {name: array[:0] for name, array in arrays().items()}
    assert predict(Scorer(5), empty).shape == (0,)
    assert predict(Scorer(5, n_classes=3), prepared(empty)).shape == (0, 3)


def test_argument_errors(tmp_path):
    data = arrays()
    with pytest.raises(PredictError, match="batch_size"):
        predict(Scorer(5), data, batch_size=0)
    with pytest.raises(PredictError, match="no array"):
        predict(Scorer(5), {"features": data["features"]})
    with pytest.raises(PredictError, match="different numbers of events"):
        predict(Scorer(5), {"features": data["features"], "neighbours": data["neighbours"][:5]})
    shared = PreparedData(dict(data), {}, shared=frozenset({"neighbours"}))
    with pytest.raises(PredictError, match="shared by all events"):
        predict(Scorer(5), shared)
    with pytest.raises(PredictError, match="does not exist"):
        predict(Scorer(5), data, output=tmp_path / "missing" / "p.npy")
    with pytest.raises(PredictError, match="device"):
        predict(Scorer(5), data, device="abacus")
    with pytest.raises(PredictError, match="data must be"):
        predict(Scorer(5), [1, 2, 3])


def memory() -> dict[str, int]:
    """Resident anonymous and file-backed memory of this process, bytes."""
    fields = {}
    with open("/proc/self/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("RssAnon", "RssFile", "RssShmem"):
                fields[name] = int(value.split()[0]) * 1024
    return fields


def peak_growth(function):
    """(result, peak growth of RssAnon, of RssFile + RssShmem) while ``function()`` runs,
    sampled every few milliseconds by a thread."""
    base = memory()
    peak = dict(base)
    running = True

    def sample():
        while running:
            for name, value in memory().items():
                peak[name] = max(peak[name], value)
            time.sleep(0.005)

    thread = threading.Thread(target=sample)
    thread.start()
    try:
        result = function()
    finally:
        running = False
        thread.join()
    for name, value in memory().items():
        peak[name] = max(peak[name], value)
    mapped = peak["RssFile"] + peak["RssShmem"] - base["RssFile"] - base["RssShmem"]
    return result, peak["RssAnon"] - base["RssAnon"], mapped


class Big(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = torch.nn.Linear(31, 1)
        self.inputs = ("features",)

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.linear(features)).squeeze(-1)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_memory_stays_bounded_on_a_large_split(tmp_path):
    """2e6 events × 31 features (248 MB) on disk: anonymous memory grows by a few batches only,
    and the rows read do not stay resident."""
    n_events, n_features = 2_000_000, 31
    features = allocate_npy(tmp_path / "features.npy", (n_events, n_features), np.float32)
    columns = np.arange(n_features, dtype=np.float32)
    for start in range(0, n_events, 250_000):
        stop = start + 250_000
        features[start:stop] = np.arange(start, stop, dtype=np.float32)[:, None] * 1e-6 - columns
        release_rows(features, start, stop)
    features.flush()
    del features
    labels = allocate_npy(tmp_path / "labels.npy", (n_events,), np.int8)
    del labels
    split_bytes = n_events * n_features * 4
    mapped = np.load(tmp_path / "features.npy", mmap_mode="r")
    data = PreparedData(
        {"features": mapped, "labels": np.load(tmp_path / "labels.npy", mmap_mode="r")}, {}
    )
    model = Big()
    predict(model, {"features": np.array(mapped[:20_000])})  # warm up torch's allocator
    output = tmp_path / "predictions.npy"
    result, anon_growth, mapped_growth = peak_growth(lambda: predict(model, data, output=output))
    assert isinstance(result, np.memmap) and result.shape == (n_events,)
    rows = [0, 1_234_567, n_events - 1]
    with torch.no_grad():
        expected = model.predict(torch.from_numpy(np.array(mapped[rows]))).numpy()
    np.testing.assert_allclose(result[rows], expected, rtol=1e-6)
    assert anon_growth < split_bytes / 10, anon_growth  # a few batches, not the split
    assert mapped_growth < split_bytes / 4, mapped_growth  # rows read are dropped again
