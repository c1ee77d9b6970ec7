"""ONNX export of models and ensembles: onnxruntime reproduces PyTorch's predictions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pd4ml.models.description import describe_arrays

torch = pytest.importorskip("torch", reason="the torch extra is not installed")
onnx = pytest.importorskip("onnx", reason="the onnx extra is not installed")
onnxruntime = pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")

from pd4ml.models import (  # noqa: E402
    DNN,
    FCN,
    DataDescription,
    DNNConfig,
    Ensemble,
    FCNConfig,
    OnnxExportError,
    OnnxInputError,
    check_onnx,
    export_onnx,
)

TOLERANCE = 1e-5
EMBEDDING = (("jet_multiplicity", 4, 3),)


@pytest.fixture(autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)


def batch(n: int = 7, seed: int = 0, regression: bool = False) -> dict[str, np.ndarray]:
    generator = np.random.default_rng(seed)
    features = generator.normal(size=(n, 6, 3)).astype(np.float32)
    return {
        "features": features,
        "mask": generator.random((n, 6)) > 0.3,
        "jet_multiplicity": generator.integers(0, 4, n),
        "labels": features[:, 0, 0] if regression else np.arange(n) % 2,
    }


def description(regression: bool = False) -> DataDescription:
    return describe_arrays(**batch(20, regression=regression))


def onnx_io(path: Path) -> tuple[list[str], list[object], list[object]]:
    graph = onnx.load(str(path)).graph
    names = [item.name for item in graph.input]
    first_axes = [item.type.tensor_type.shape.dim[0].dim_param for item in graph.input]
    output_axes = [item.type.tensor_type.shape.dim[0].dim_param for item in graph.output]
    return names, first_axes, output_axes


def test_fcn_exports_with_named_inputs_and_a_dynamic_batch(tmp_path: Path) -> None:
    model = FCN(description(), FCNConfig(depth=3, width=8))
    model.train()
    path = export_onnx(model, tmp_path / "fcn.onnx")
    assert model.training  # mode restored
    names, axes, output_axes = onnx_io(path)
    assert names == ["features", "mask"] == list(model.inputs)
    assert all(axes) and all(output_axes)  # symbolic, not fixed to the trace's batch of 2
    for n in (1, 7, 33):  # other sizes than the export's
        assert check_onnx(model, path, batch(n, seed=n)) < TOLERANCE
    assert not list(tmp_path.glob(".*"))  # no temporary file left


def test_dnn_with_embedding_and_batch_norm_exports(tmp_path: Path) -> None:
    model = DNN(description(), DNNConfig(depth=3, width=5, embeddings=EMBEDDING, batch_norm=True))
    model.train()
    with torch.no_grad():  # running statistics away from their initial values
        data = {k: torch.from_numpy(v) for k, v in batch(16, seed=3).items()}
        model(*(data[name] for name in model.inputs))
    model.eval()
    path = export_onnx(model, tmp_path / "dnn.onnx")
    assert onnx_io(path)[0] == ["features", "mask", "jet_multiplicity"]
    assert check_onnx(model, path, batch(9, seed=1)) < TOLERANCE


def test_ensemble_exports_its_weighted_mean(tmp_path: Path) -> None:
    data = description()
    ensemble = Ensemble(
        [
            FCN(data, FCNConfig(depth=2, width=6)),
            DNN(data, DNNConfig(depth=2, width=4, embeddings=EMBEDDING)),
            DNN(data, DNNConfig(depth=1, width=4, activation="selu", dropout=0.1)),
        ],
        weights=[1.0, 2.0, 3.0],
    )
    path = export_onnx(ensemble, tmp_path / "ensemble.onnx")
    assert onnx_io(path)[0] == list(ensemble.inputs)
    assert check_onnx(ensemble, path, batch(11, seed=2)) < TOLERANCE
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {k: v for k, v in batch(5, seed=4).items() if k in ensemble.inputs}
    (output,) = session.run(None, feed)
    assert output.shape == (5,)
    assert ((output > 0) & (output < 1)).all()  # probabilities, not logits


def test_regression_exports_values_and_multiclass_probabilities(tmp_path: Path) -> None:
    regression = FCN(description(regression=True), FCNConfig(depth=1, width=4))
    path = export_onnx(regression, tmp_path / "regression.onnx")
    assert check_onnx(regression, path, batch(6, regression=True)) < TOLERANCE
    arrays = batch(30)
    arrays["labels"] = np.arange(30) % 3
    multiclass = DNN(describe_arrays(**arrays), DNNConfig(depth=1, width=4))
    path = export_onnx(multiclass, tmp_path / "multiclass.onnx")
    assert check_onnx(multiclass, path, arrays) < TOLERANCE
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (output,) = session.run(None, {"features": arrays["features"], "mask": arrays["mask"]})
    np.testing.assert_allclose(output.sum(1), 1.0, rtol=1e-6)


def test_the_dynamo_exporter_gives_the_same_predictions(tmp_path: Path) -> None:
    model = DNN(description(), DNNConfig(depth=2, width=4, embeddings=EMBEDDING))
    path = export_onnx(model, tmp_path / "dynamo.onnx", exporter="dynamo")
    names, axes, _ = onnx_io(path)
    assert names == list(model.inputs)
    assert all(axes)
    assert check_onnx(model, path, batch(9, seed=5)) < TOLERANCE


def test_bad_arguments_and_batches_are_refused(tmp_path: Path) -> None:
    model = FCN(description(), FCNConfig(depth=1, width=2))
    with pytest.raises(ValueError, match="batch_size must be >= 2"):
        export_onnx(model, tmp_path / "m.onnx", batch_size=1)
    with pytest.raises(ValueError, match="exporter must be"):
        export_onnx(model, tmp_path / "m.onnx", exporter="tf2onnx")  # type: ignore[arg-type]
    path = export_onnx(model, tmp_path / "m.onnx")
    with pytest.raises(OnnxInputError, match=r"lacks the model input.*mask"):
        check_onnx(model, path, {"features": batch()["features"]})
    (tmp_path / "broken.onnx").write_bytes(b"not onnx")
    with pytest.raises(OnnxExportError, match="onnxruntime cannot run"):
        check_onnx(model, tmp_path / "broken.onnx", batch())
