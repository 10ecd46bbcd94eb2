"""The build-time exports: parity with their references, the repository files, and no drift."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from export.__main__ import DEFAULT_REPOSITORY, parse_args
from export.network import Classifier, check_parity, class_names, export_onnx, load_backbone
from export.preprocess import (
    MAX_LEVEL_DIFF,
    PARITY_SIZES,
    build_preprocess_model,
    check_preprocess_parity,
    reference_preprocess,
)
from servables import default, names, specs
from servables import repository as repo
from servables.classification import Served
from servables.specs import PreprocessSpec


def _session(proto) -> ort.InferenceSession:
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])


def test_preprocess_matches_cv2_within_one_level_on_every_size() -> None:
    spec = PreprocessSpec()
    worst = check_preprocess_parity(build_preprocess_model(spec), spec)
    assert set(worst) == {f"{h}x{w}" for h, w in PARITY_SIZES}
    print("\npreprocess vs cv2, worst uint8 levels:", {k: round(v, 3) for k, v in worst.items()})
    assert max(worst.values()) <= MAX_LEVEL_DIFF
    assert worst["256x256"] < 1e-3  # no resize at all: only float rounding remains


def test_preprocess_on_real_photographs(photos: dict[str, np.ndarray]) -> None:
    spec = PreprocessSpec()
    session = _session(build_preprocess_model(spec))
    levels = np.asarray(spec.std, np.float32)[:, None, None] * 255
    for name, image in photos.items():
        graph = session.run(["INPUT"], {"IMAGE": image[None]})[0][0]
        assert graph.shape == (3, 224, 224)
        assert (np.abs(graph - reference_preprocess(image)) * levels).max() <= MAX_LEVEL_DIFF, name


def test_preprocess_parameters_are_honoured() -> None:
    spec = PreprocessSpec(resize=160, crop=128, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    image = np.random.default_rng(1).integers(0, 256, (300, 500, 3), dtype=np.uint8)
    graph = _session(build_preprocess_model(spec)).run(["INPUT"], {"IMAGE": image[None]})[0][0]
    reference = reference_preprocess(image, spec)
    assert graph.shape == reference.shape == (3, 128, 128)
    assert np.abs(graph - reference).max() * 0.5 * 255 <= MAX_LEVEL_DIFF
    assert graph.min() >= -1.0 and graph.max() <= 1.0  # mean/std 0.5 maps [0, 1] onto [-1, 1]


def test_preprocess_batch_of_same_size_images() -> None:
    images = np.random.default_rng(2).integers(0, 256, (3, 240, 320, 3), dtype=np.uint8)
    out = _session(build_preprocess_model()).run(["INPUT"], {"IMAGE": images})[0]
    assert out.shape == (3, 3, 224, 224)
    for i in range(3):
        np.testing.assert_allclose(out[i], reference_preprocess(images[i]), atol=0.02)


def test_reference_rejects_what_is_not_a_bgr_image() -> None:
    with pytest.raises(ValueError, match="uint8"):
        reference_preprocess(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match="crop"):
        PreprocessSpec(resize=100, crop=200)


def test_resnet_onnx_matches_eager_pytorch() -> None:
    model = Classifier(load_backbone("resnet18", "seed:0"))
    proto = export_onnx(model, 224)
    assert check_parity(model, proto, 224) <= 1e-4
    inputs = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in proto.graph.input}
    assert inputs == {"INPUT": ["batch", 3, 224, 224]}
    assert max(op.version for op in proto.opset_import if op.domain in ("", "ai.onnx")) >= 17
    # The dynamic batch axis really is dynamic: batch 5 and batch 1 agree with eager.
    batch = torch.randn(5, 3, 224, 224)
    with torch.no_grad():
        logits, probabilities = model(batch)
    onnx_logits, onnx_probabilities = _session(proto).run(None, {"INPUT": batch.numpy()})
    np.testing.assert_allclose(onnx_logits, logits.numpy(), atol=1e-4)
    np.testing.assert_allclose(onnx_probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_fp16_export_keeps_a_float32_interface() -> None:
    model = Classifier(load_backbone("resnet18", "seed:0"), fp16=True)
    proto = export_onnx(model, 224)
    assert check_parity(model, proto, 224, fp16=True) < 0.05
    out = _session(proto).run(["PROBABILITIES"], {"INPUT": np.zeros((1, 3, 224, 224), np.float32)})[0]
    assert out.dtype == np.float32


def test_weights_seed_and_pth_load_the_same_network(tmp_path: Path) -> None:
    """(From S3 too: tests/integration/test_weights_s3.py, against moto.)"""
    first, again = load_backbone("resnet18", "seed:7"), load_backbone("resnet18", "seed:7")
    other = load_backbone("resnet18", "seed:8")
    assert torch.equal(first.fc.weight, again.fc.weight)
    assert not torch.equal(first.fc.weight, other.fc.weight)

    path = tmp_path / "weights.pth"
    torch.save(first.state_dict(), path)
    assert torch.equal(load_backbone("resnet18", str(path)).fc.weight, first.fc.weight)


@pytest.mark.parametrize(
    ("arch", "weights", "error"),
    [
        ("resnet18", "seed:x", "seed:<integer>"),
        ("resnet18", "/nonexistent.pth", "existing .pth"),
        ("resnet18", "s3://bucket-only", "s3://bucket/key"),
        ("resnet_18", "seed:0", "did you mean resnet18"),
    ],
)
def test_bad_weight_specs_fail_clearly(arch: str, weights: str, error: str) -> None:
    with pytest.raises((ValueError, FileNotFoundError), match=error.replace("*", r"\*")):
        load_backbone(arch, weights)


def test_committed_configs_have_not_drifted(tmp_path: Path) -> None:
    """The committed configs are exactly what `python -m export` writes with its defaults."""
    args = parse_args([])
    spec = PreprocessSpec(args.resize, args.crop, args.mean, args.std, args.interpolation)
    model_configs = default.model_configs(args.model, spec, specs.Batching())
    repo.write_configs(tmp_path, model_configs)
    committed = sorted(p.relative_to(DEFAULT_REPOSITORY) for p in DEFAULT_REPOSITORY.glob("*/config.pbtxt"))
    generated = sorted(p.relative_to(tmp_path) for p in tmp_path.glob("*/config.pbtxt"))
    assert committed == generated
    for relative in generated:
        assert (DEFAULT_REPOSITORY / relative).read_text() == (tmp_path / relative).read_text(), relative


def test_committed_configs_describe_the_serving_design() -> None:
    repository = repo.read_repository(DEFAULT_REPOSITORY)
    assert set(repository) == {
        names.DECODE, names.DECODE_REDUCED, names.PREPROCESS, "resnet50", names.CLASSIFY, names.CLASSIFY_PIXELS,
        names.CHECK_PIXELS, names.CANNY_GRAPH, names.CANNY, names.EDGES,
    }  # fmt: skip
    resnet = repository["resnet50"]
    assert resnet.backend == "onnxruntime" and resnet.max_batch_size >= 64
    policy = resnet.dynamic_batching.default_queue_policy
    assert resnet.dynamic_batching.max_queue_delay_microseconds > 0
    assert policy.max_queue_size > 0 and policy.default_timeout_microseconds > 0
    assert policy.timeout_action == policy.REJECT
    classify = repository[names.CLASSIFY]
    assert classify.platform == "ensemble"
    steps = [step.model_name for step in classify.ensemble_scheduling.step]
    assert steps == [names.DECODE_REDUCED, names.PREPROCESS, "resnet50"]
    # The public entry points take the file's bytes; the pixel entry point takes decoded BGR.
    assert [list(t.dims) for t in classify.input] == [[-1]] == [list(t.dims) for t in repository[names.EDGES].input[:1]]
    assert [list(t.dims) for t in repository[names.CLASSIFY_PIXELS].input] == [[-1, -1, 3]]
    assert classify.output[0].label_filename == names.LABELS
    # Which weights answered is no config's business (it is chosen at export): each answer says it (MODEL_ID).
    assert [t.name for t in classify.output] == [names.PROBABILITIES, names.MODEL_ID]
    assert "weights" not in classify.parameters and all("weights" not in c.parameters for c in repository.values())
    served = Served.of(classify)
    assert served is not None and (served.network, served.pixels, served.classes) == (
        "resnet50",
        names.CLASSIFY_PIXELS,
        1000,
    )
    assert served.spec == PreprocessSpec()
    assert [s.model_name for s in repository[names.EDGES].ensemble_scheduling.step] == [names.DECODE, names.CANNY_GRAPH]
    # The raw-pixel entry points are held to the upload rules by a python step first: the graphs cannot refuse.
    for entry, graph in ((names.CLASSIFY_PIXELS, names.PREPROCESS), (names.CANNY, names.CANNY_GRAPH)):
        assert [s.model_name for s in repository[entry].ensemble_scheduling.step][:2] == [names.CHECK_PIXELS, graph]
    assert repository[names.CHECK_PIXELS].backend == "python"
    decode = repository[names.DECODE_REDUCED]
    assert decode.backend == "python" and decode.parameters["min_side"].string_value == "256"
    assert repository[names.DECODE].parameters["min_side"].string_value == "0"
    preprocess = repository[names.PREPROCESS]
    assert preprocess.max_batch_size > 0 and not preprocess.HasField("dynamic_batching")


def test_strict_writer_refuses_unknown_fields() -> None:
    with pytest.raises(Exception, match="max_batch"):
        repo.to_pbtxt({"name": "x", "max_batch": 4})


def test_labels_come_from_torchvision_metadata(tmp_path: Path) -> None:
    labels = class_names("resnet18")
    assert len(labels) == 1000 and labels[0] == "tench" and labels[1] == "goldfish"
    (tmp_path / "classify").mkdir()
    [path] = repo.write_labels(tmp_path, ["classify"], labels)
    assert path.read_text().splitlines() == labels
