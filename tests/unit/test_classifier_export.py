"""``python -m export classifier``: what it takes from torchvision and from the flags, how a user's ONNX file is
wrapped, and the exports it refuses, each with a message that says what to change (nothing written then)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torchvision.models import get_model

from export.__main__ import main
from export.classifier import onnx_network, torchvision_spec
from export.progress import Steps
from servables import names
from servables.specs import PreprocessSpec


def tiny_onnx(
    path: Path,
    classes: int = 3,
    batch: int | str = "N",
    shape: tuple[int | str, ...] = (3, 64, 64),
    softmax: bool = False,
) -> Path:
    """A user's own model: mean colour of each plane -> class scores, ``[batch, *shape]`` in."""
    weights = np.random.default_rng(0).standard_normal((shape[0] if isinstance(shape[0], int) else 3, classes))
    nodes = [
        helper.make_node("ReduceMean", ["image", "axes"], ["mean"], keepdims=0),
        helper.make_node("MatMul", ["mean", "weights"], ["logits"]),
    ]
    output = "logits"
    if softmax:
        nodes.append(helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1))
        output = "probabilities"
    axes = [2, 3] if len(shape) == 3 else [1, 2]
    graph = helper.make_graph(
        nodes,
        "user",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [batch, *shape])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, [batch, classes])],
        [numpy_helper.from_array(np.asarray(axes, np.int64), "axes"),
         numpy_helper.from_array(weights.astype(np.float32), "weights")],
    )  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    return path


def labels(path: Path, count: int) -> Path:
    path.write_text("".join(f"class {i}\n" for i in range(count)))
    return path


def export_onnx(tmp_path: Path, model: Path, label_count: int, *extra: str) -> int:
    label_file = labels(tmp_path / "labels.txt", label_count)
    return main(["classifier", "mine", "--onnx", str(model), "--labels", str(label_file), "--resize", "72", "--crop",
                 "64", "--repository", str(tmp_path / "repository"), *extra])  # fmt: skip


@pytest.mark.parametrize(
    ("build", "label_count", "says"),
    [
        (lambda p: tiny_onnx(p, batch=1), 3, "has a fixed batch size of 1: Triton batches requests along that "
         "dimension, so it must be dynamic; re-export it with a dynamic batch axis, e.g. torch.onnx.export(..., "
         "dynamic_axes={'image': {0: 'batch'}"),
        (lambda p: tiny_onnx(p, shape=(3, 64, 64), batch=3), 3, "fixed batch size of 3"),
        (lambda p: tiny_onnx(p, classes=5), 3, "the output has 5 scores per image but the labels file has 3 lines: "
         "give one label per class, in the output's order"),
        (lambda p: tiny_onnx(p, shape=(64, 64, 3)), 3, "it must be [N, 3, H, W]"),
        (lambda p: tiny_onnx(p, shape=(3, 128, 128)), 3, "the network takes 128x128 images but the crop is 64: pass "
         "--crop 128"),
    ],
    ids=["batch of one", "fixed batch", "labels count", "channels last", "input size"],
)  # fmt: skip
def test_onnx_files_that_cannot_be_served_are_refused_saying_what_to_change(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], build: object, label_count: int, says: str
) -> None:
    model = build(tmp_path / "user.onnx")  # type: ignore[operator]
    assert export_onnx(tmp_path, model, label_count) == 1
    assert says in capsys.readouterr().err
    assert not (tmp_path / "repository").exists()


def test_an_input_without_batch_dimension_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, [3, 64, 64])
    out = helper.make_tensor_value_info("scores", TensorProto.FLOAT, [3])
    axes = numpy_helper.from_array(np.asarray([1, 2], np.int64), "axes")
    graph = helper.make_graph([helper.make_node("ReduceMean", ["image", "axes"], ["scores"], keepdims=0)], "user",
                              [image], [out], [axes])  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(tmp_path / "user.onnx"))
    assert export_onnx(tmp_path, tmp_path / "user.onnx", 3) == 1
    assert "has shape [3, 64, 64]; it must be [N, 3, H, W] with a batch dimension N first" in capsys.readouterr().err


def test_weights_that_do_not_fit_the_labels_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch.save(get_model("resnet18", num_classes=3).state_dict(), tmp_path / "three.pth")
    common = ["--repository", str(tmp_path / "repository"), "--crop", "64", "--resize", "72"]
    assert main(["classifier", "mine", "--torchvision", "resnet18", "--weights", str(tmp_path / "three.pth"),
                 "--labels", str(labels(tmp_path / "five.txt", 5)), *common]) == 1  # fmt: skip
    error = capsys.readouterr().err
    assert "does not fit resnet18 with 5 classes" in error and "fc.weight" in error
    assert (
        main(["classifier", "mine", "--torchvision", "resnet18", "--labels", str(tmp_path / "five.txt"), *common]) == 1
    )
    assert "--weights imagenet has ImageNet's 1000 classes but" in capsys.readouterr().err
    assert main(["classifier", "mine", "--torchvision", "resnet18", "--weights", "seed:0", *common]) == 1
    assert "--weights seed:0 needs --labels FILE" in capsys.readouterr().err
    assert main(["classifier", "mine", "--torchvision", "resnet_18", "--weights", "seed:0", "--labels",
                 str(tmp_path / "five.txt"), *common]) == 1  # fmt: skip
    assert "did you mean resnet18" in capsys.readouterr().err
    assert main(["classifier", "classify", "--torchvision", "resnet18", *common]) == 1
    assert "'classify' is a model of the default repository" in capsys.readouterr().err
    assert not (tmp_path / "repository").exists()


def test_a_users_onnx_file_is_wrapped_with_its_answers_unchanged(tmp_path: Path) -> None:
    spec = PreprocessSpec(resize=72, crop=64)
    batch = np.random.default_rng(2).standard_normal((4, 3, 64, 64), dtype=np.float32)
    for softmax in (False, True):
        path = tiny_onnx(tmp_path / f"user-{softmax}.onnx", softmax=softmax)
        network = onnx_network(Steps(total=3), path, ["a", "b", "c"], spec)
        [given] = ort.InferenceSession(str(path)).run(None, {"image": batch})
        logits, probabilities = ort.InferenceSession(network.proto.SerializeToString()).run(
            [names.LOGITS, names.PROBABILITIES], {names.INPUT: batch}
        )
        np.testing.assert_array_equal(logits, given)
        # Scores that already are probabilities are kept; logits get their softmax.
        expected = given if softmax else np.exp(given) / np.exp(given).sum(axis=1, keepdims=True)
        np.testing.assert_allclose(probabilities, expected, rtol=1e-5)
        assert ("softmax added" in network.parity) != softmax
        assert network.weights.startswith(f"file:{path.name} (sha256 ")


def test_preprocessing_comes_from_torchvision() -> None:
    assert torchvision_spec("efficientnet_b0") == PreprocessSpec(resize=256, crop=224, interpolation="cubic")
    assert torchvision_spec("convnext_tiny") == PreprocessSpec(resize=236, crop=224)
    assert torchvision_spec("inception_v3") == PreprocessSpec(resize=342, crop=299)
