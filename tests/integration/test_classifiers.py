"""Classifiers of one's own, served side by side: small real networks fine-tuned here on generated images, exported
with ``python -m export classifier``, served by a real Triton behind a real gateway, each answering its own
reference; one from a user's ONNX file exported while the stack serves and loaded without a restart.

- ``colours``: torchvision's mobilenet_v3_small, 3 classes (red, green, blue), resize 73 cubic, crop 64, ImageNet's
  mean and std; the gateway's default classifier here (``GATEWAY_CLASSIFY_MODEL``);
- ``stripes``: torchvision's resnet18, 2 classes (horizontal, vertical stripes), resize 73 linear, crop 64, mean and
  std 0.5;
- ``shades``: a user's ONNX file (a tiny CNN, 3 classes), resize 80 linear, crop 64, mean 0 and std 1.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path

import cv2
import httpx
import numpy as np
import onnxruntime as ort
import pytest
import torch
from playwright.sync_api import Page, expect
from torch import nn
from torchvision.models import get_model

from export.__main__ import main as export
from export.preprocess import reference_preprocess
from imaging import Limits, decode
from launcher.triton import TritonServer
from servables.specs import PreprocessSpec
from tests.integration import test_ui
from tests.support.classifiers import COLOURS, STRIPES, colour_image, fine_tune, save, stripes_image
from tests.support.stack import ROOT, Gateway, running_triton

COLOURS_SPEC = PreprocessSpec(resize=73, crop=64, interpolation="cubic")
STRIPES_SPEC = PreprocessSpec(resize=73, crop=64, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
SHADES_SPEC = PreprocessSpec(resize=80, crop=64, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
STEPS = 12
browser, page = test_ui.browser, test_ui.page  # the page's fixtures: a real Chromium


def _flags(spec: PreprocessSpec) -> list[str]:
    triple = ",".join
    return ["--resize", str(spec.resize), "--crop", str(spec.crop), "--interpolation", spec.interpolation,
            "--mean", triple(map(str, spec.mean)), "--std", triple(map(str, spec.std))]  # fmt: skip


class Shades(nn.Module):
    """A user's own small network, exported to ONNX by the user (not by us)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 5, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classes = nn.Linear(8, len(COLOURS))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classes(self.features(images))


@pytest.fixture(scope="module")
def networks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, nn.Module]:
    """Fine-tuned on one thread: two threads on two busy cores spin more than they compute."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        colours = fine_tune(
            get_model("mobilenet_v3_small", num_classes=3), list(COLOURS), colour_image, COLOURS_SPEC, STEPS
        )
        torch.manual_seed(0)
        stripes = fine_tune(get_model("resnet18", num_classes=2), list(STRIPES), stripes_image, STRIPES_SPEC, STEPS)
        torch.manual_seed(0)
        shades = fine_tune(Shades(), list(COLOURS), colour_image, SHADES_SPEC, STEPS)
    finally:
        torch.set_num_threads(threads)
    return {"colours": colours, "stripes": stripes, "shades": shades}


@pytest.fixture(scope="module")
def files(networks: dict[str, nn.Module], tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("classifiers")
    (folder / "colours.txt").write_text("\n".join(COLOURS) + "\n")
    (folder / "stripes.txt").write_text("\n".join(STRIPES) + "\n")
    save(networks["colours"], folder / "colours.pth")
    save(networks["stripes"], folder / "stripes.pth")
    torch.onnx.export(
        networks["shades"], (torch.zeros(2, 3, 64, 64),), str(folder / "shades.onnx"), dynamo=False,
        input_names=["pixels"], output_names=["scores"], dynamic_axes={"pixels": {0: "n"}, "scores": {0: "n"}},
    )  # fmt: skip
    return folder


def _export_classifier(name: str, source: list[str], labels: Path, spec: PreprocessSpec, repository: Path) -> None:
    common = ["--labels", str(labels), *_flags(spec), "--repository", str(repository), "--max-batch-size", "8"]
    assert export(["classifier", name, *source, *common]) == 0


@pytest.fixture(scope="module")
def repository(files: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("classifiers-repository")
    colours = ["--torchvision", "mobilenet_v3_small", "--weights", str(files / "colours.pth")]
    _export_classifier("colours", colours, files / "colours.txt", COLOURS_SPEC, target)
    stripes = ["--torchvision", "resnet18", "--weights", str(files / "stripes.pth")]
    _export_classifier("stripes", stripes, files / "stripes.txt", STRIPES_SPEC, target)
    return target


@pytest.fixture(scope="module")
def server(repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    with running_triton(repository, tmp_path_factory) as triton:
        yield triton


@pytest.fixture(scope="module")
def stack(server: TritonServer, gateway_factory: Callable[..., Gateway]) -> Gateway:
    return gateway_factory(GATEWAY_TRITON_URL=server.grpc_url, GATEWAY_CLASSIFY_MODEL="colours")


Probabilities = Callable[[np.ndarray], np.ndarray]  # a network's reference: float32 [1, 3, S, S] -> [classes]


def eager(network: nn.Module) -> Probabilities:
    def run(inputs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return torch.softmax(network(torch.from_numpy(inputs)), dim=1)[0].numpy()

    return run


@cache
def _graph(preprocess: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(preprocess / "1" / "model.onnx"))


def _references(network: Probabilities, jpeg: bytes, spec: PreprocessSpec, preprocess: Path) -> tuple[np.ndarray, ...]:
    """What the classifier must answer, after the decode Triton runs (at the resize target's scale): its network
    on the exported preprocessing graph's output (the served path, step by step), and on OpenCV's preprocessing
    (the pipeline the graph stands for)."""
    pixels = decode(jpeg, Limits(), spec.resize)
    graph = _graph(preprocess).run(None, {"IMAGE": pixels[None]})[0]
    return network(graph), network(reference_preprocess(pixels, spec)[None])


def _classify(stack: Gateway, name: str, jpeg: bytes, top_k: int, **params: str) -> dict:
    answer = httpx.post(f"{stack.url}/v1/models/{name}/classify", params={"top_k": top_k, **params}, content=jpeg,
                        headers={"content-type": "image/jpeg"}, timeout=60)  # fmt: skip
    assert answer.status_code == 200, answer.text
    return answer.json()


def _assert_answers(answer: dict, served: np.ndarray, opencv: np.ndarray, labels: list[str]) -> None:
    """The served path's top-k exactly (probabilities within 1e-4); OpenCV's pipeline's top-k, the order swapped
    only between near ties (the preprocessing graph and OpenCV differ by under one uint8 level per pixel)."""
    assert [p["index"] for p in answer["predictions"]] == list(
        np.argsort(-served, kind="stable")[: len(answer["predictions"])]
    )
    for got, want in zip(answer["predictions"], np.argsort(-opencv), strict=False):
        assert got["label"] == labels[got["index"]]
        assert got["probability"] == pytest.approx(served[got["index"]], abs=1e-4)
        assert got["probability"] == pytest.approx(opencv[got["index"]], abs=5e-2)
        if got["index"] != want:
            assert abs(opencv[got["index"]] - opencv[want]) <= 5e-2, (answer, opencv)


def _jpeg(rgb: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()


def test_two_classifiers_side_by_side_answer_their_own_references(
    stack: Gateway, networks: dict[str, nn.Module], repository: Path, photos: dict[str, np.ndarray]
) -> None:
    for name, photo in photos.items():
        jpeg = cv2.imencode(".jpg", photo)[1].tobytes()
        colours = _classify(stack, "colours", jpeg, 3)
        stripes = _classify(stack, "stripes", jpeg, 2)
        expected = _references(eager(networks["colours"]), jpeg, COLOURS_SPEC, repository / "colours_preprocess")
        _assert_answers(colours, *expected, list(COLOURS))
        expected = _references(eager(networks["stripes"]), jpeg, STRIPES_SPEC, repository / "stripes_preprocess")
        _assert_answers(stripes, *expected, list(STRIPES))
        assert (colours["model"], colours["model_version"], colours["weights"]) == ("colours", "1", "file:colours.pth")
        assert (stripes["model"], stripes["weights"]) == ("stripes", "file:stripes.pth"), name
    # What the images show decides the answer, through Triton's decode and preprocessing: RGB in the right order
    # (a red photo is red, not blue), rows and columns in the right order (horizontal stripes stay horizontal).
    rng = np.random.default_rng(7)
    for colour in COLOURS:
        answer = _classify(stack, "colours", _jpeg(colour_image(colour, 300, rng)), 1)
        assert answer["predictions"][0]["label"] == colour
    for direction in STRIPES:
        answer = _classify(stack, "stripes", _jpeg(stripes_image(direction, 300, rng)), 1)
        assert answer["predictions"][0]["label"] == direction
    default = httpx.post(f"{stack.url}/v1/classify", content=_jpeg(colour_image("green", 200, rng)),
                         headers={"content-type": "image/jpeg"}, timeout=60).json()  # fmt: skip
    assert (default["model"], default["predictions"][0]["label"]) == ("colours", "green")


def test_models_lists_each_classifier_with_its_labels_and_preprocessing(stack: Gateway) -> None:
    listed = {model["name"]: model for model in httpx.get(f"{stack.url}/v1/models", timeout=30).json()["models"]}
    colours, stripes = listed["colours"], listed["stripes"]
    assert (colours["kind"], stripes["kind"]) == ("classification", "classification")
    assert colours["about"] == {
        "labels": 3,
        "preprocessing": {"resize": 73, "crop": 64, "interpolation": "cubic", "mean": list(COLOURS_SPEC.mean),
                          "std": list(COLOURS_SPEC.std)},
        "network": "colours_network", "pixels": "colours_pixels", "route": "/v1/models/colours/classify",
        "default": True,
    }  # fmt: skip
    assert (stripes["about"]["labels"], stripes["about"]["default"]) == (2, False)
    assert stripes["about"]["preprocessing"]["mean"] == [0.5, 0.5, 0.5]
    assert [v["version"] for v in listed["stripes_network"]["versions"]] == ["1"]
    # Both share one decode step: the same resize target.
    assert listed["decode_reduced_73"]["kind"] is None and listed["colours_network"]["kind"] is None


def test_unknown_names_and_other_models_are_404(stack: Gateway) -> None:
    jpeg = _jpeg(colour_image("red", 100, np.random.default_rng(0)))
    for name, says in [("nothing", "serves no classifier 'nothing'"), ("colours_network", "is not a classifier")]:
        answer = httpx.post(f"{stack.url}/v1/models/{name}/classify", content=jpeg,
                            headers={"content-type": "image/jpeg"}, timeout=60)  # fmt: skip
        assert (answer.status_code, answer.json()["error"]["code"]) == (404, "model_not_found")
        assert says in answer.json()["error"]["message"]
    pinned = httpx.post(f"{stack.url}/v1/models/stripes/classify?model_version=7", content=jpeg,
                        headers={"content-type": "image/jpeg"}, timeout=60)  # fmt: skip
    assert (pinned.status_code, pinned.json()["error"]["code"]) == (404, "model_version_not_found")
    assert "retry-after" not in pinned.headers


def test_the_page_picks_the_classifier(page: Page, stack: Gateway, tmp_path: Path) -> None:
    photo = tmp_path / "vertical.jpg"
    photo.write_bytes(_jpeg(stripes_image(STRIPES[1], 320, np.random.default_rng(9))))
    page.goto(f"{stack.url}/")
    choice = page.locator("#model-choice")
    expect(choice.locator("option")).to_have_text(["colours (default)", "stripes"])
    choice.select_option(label="stripes")
    expect(page.locator("#model-about")).to_have_text("2 labels · resize 73 linear, crop 64")

    page.set_input_files("#file", photo)
    expect(page.locator("#predictions li .label").first).to_have_text(STRIPES[1])
    expect(page.locator("#model")).to_have_text("stripes")
    expect(page.locator("#weights")).to_have_text("file:stripes.pth")
    expect(page.locator("#weights-warning")).to_be_hidden()
    # This Triton has no edge detector: its panel stays away (no black frame), the error says why.
    expect(page.locator("#error p")).to_contain_text("Edges failed with 503")
    expect(page.locator("#edges-figure")).to_be_hidden()
    expect(page.locator("#photo")).to_be_visible()


def test_an_onnx_file_exported_while_serving_is_loaded_without_restart(
    stack: Gateway, server: TritonServer, repository: Path, files: Path, photos: dict[str, np.ndarray]
) -> None:
    _export_classifier("shades", ["--onnx", str(files / "shades.onnx")], files / "colours.txt", SHADES_SPEC, repository)
    added = {path.parent.name for path in server.refresh_repository()}
    assert {"shades", "shades_pixels", "shades_network", "shades_preprocess", "decode_reduced_80"} <= added
    for entry_point in ("shades", "shades_pixels"):  # the one REST calls, and the one for decoded pixels
        loaded = httpx.post(f"{stack.url}/v1/admin/models/{entry_point}/load", timeout=180)
        assert loaded.status_code == 200, loaded.text

    session = ort.InferenceSession(str(files / "shades.onnx"))

    def user_file(inputs: np.ndarray) -> np.ndarray:
        [scores] = session.run(None, {"pixels": inputs})
        exponentials = np.exp(scores[0] - scores[0].max())
        return exponentials / exponentials.sum()

    jpeg = cv2.imencode(".jpg", photos["coffee"])[1].tobytes()
    answer = _classify(stack, "shades", jpeg, 3)
    _assert_answers(answer, *_references(user_file, jpeg, SHADES_SPEC, repository / "shades_preprocess"), list(COLOURS))
    assert answer["weights"].startswith("file:shades.onnx (sha256 ")
    red = _classify(stack, "shades", _jpeg(colour_image("red", 200, np.random.default_rng(3))), 1)
    assert red["predictions"][0]["label"] == "red"

    # The gRPC example calls any classifier, by its bytes or its pixels, with the gateway's answer.
    path = files / "coffee.jpg"
    path.write_bytes(jpeg)
    for extra in ([], ["--pixels"]):
        script = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "grpc_classify.py"), str(path), "--url", server.grpc_url,
             "--model", "shades", "--top-k", "3", *extra], capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert [p["label"] for p in json.loads(script.stdout)][:1] == [answer["predictions"][0]["label"]]
        assert "shades: version 1 of its network, weights file:shades.onnx" in script.stderr


def test_the_cli_picks_the_classifier(stack: Gateway, server: TritonServer, tmp_path: Path) -> None:
    path = tmp_path / "stripes.jpg"
    path.write_bytes(_jpeg(stripes_image(STRIPES[1], 240, np.random.default_rng(5))))
    for transport in (["--url", stack.url], ["--grpc", "--triton-url", server.grpc_url]):
        run = subprocess.run(
            [sys.executable, "-m", "client", "classify", str(path), "--model", "stripes", "--format", "json",
             "--top-k", "1", "-q", *transport], capture_output=True, text=True, cwd=ROOT,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        [result] = json.loads(run.stdout)
        assert (result["model"], result["weights"]) == ("stripes", "file:stripes.pth"), transport
        assert result["predictions"][0]["label"] == STRIPES[1]
