"""``make verify-images`` on the test repository: the images' environments run it as the deploy ships it, answer as
the embedded stack does (the hostile corpus included), and a package missing from an image's lock is named.

The reference is the session's Triton (the embedded stack on the same repository).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from deploy.image_envs import (
    GATEWAY_IMAGE,
    TRITON_IMAGE,
    ImageCheckFailed,
    build_env,
    find_python,
    locked_requirements,
)
from deploy.verify_images import Report, build_gateway_env, check_triton_imports, gateway_classifies, verify
from launcher.triton import TritonServer
from servables.repository import read_repository
from tests.support.hostile import corpus


def hostile_files(photo: np.ndarray) -> dict[str, bytes]:
    """The corpus's image files (what the decode step's rules refuse), not its HTTP-only cases."""
    return {
        case.name: case.kwargs["content"]
        for case in corpus(photo, max_body_bytes=10 * 1024 * 1024)
        if case.path in ("/v1/classify", "/v1/edges")
        and case.status in (413, 415, 422)
        and isinstance(case.kwargs.get("content"), bytes)
        and case.kwargs["headers"].get("content-type", "").startswith(("image/", "application/octet-stream"))
        and len(case.kwargs["headers"].get("content-type", "")) < 100
    }


@pytest.fixture(scope="module")
def report(
    test_repository: Path, triton: TritonServer, photos: dict[str, np.ndarray], tmp_path_factory: pytest.TempPathFactory
) -> Report:
    samples = {name: cv2.imencode(".jpg", photo)[1].tobytes() for name, photo in photos.items()}
    samples["coffee as PNG"] = cv2.imencode(".png", photos["coffee"])[1].tobytes()
    samples["astronaut, 2048x2048"] = cv2.imencode(".jpg", cv2.resize(photos["astronaut"], (2048, 2048)))[1].tobytes()
    samples |= hostile_files(photos["coffee"])
    return verify(test_repository, samples, triton.grpc_url, tmp_path_factory.mktemp("verify-images"))


def test_the_images_run_the_repository_as_the_deploy_ships_it(report: Report, test_repository: Path) -> None:
    assert [step[:5] for step in report.steps] == ["[1/5]", "[2/5]", "[3/5]", "[4/5]", "[5/5]"]
    # Every python-backend instance (decode, decode_reduced, check_pixels) on a Python 3.10 stub in the venv.
    python_models = [c for c in read_repository(test_repository).values() if c.backend == "python"]
    assert report.decode_stubs == sum(group.count for c in python_models for group in c.instance_group) >= 5
    assert report.gpu_decoder_jpegs >= 5
    # Every hostile file refused by the image's decode step with the embedded stack's code (differences fail verify).
    assert len(report.refusals) >= 20
    assert {"corrupt_image", "image_too_large", "image_too_complex", "unsupported_image"} <= set(
        report.refusals.values()
    )
    predictions = report.gateway_answer["predictions"]
    assert isinstance(predictions, list) and len(predictions) == 5 and predictions[0]["label"]


def test_a_package_left_out_of_the_triton_image_is_named(test_repository: Path, tmp_path: Path) -> None:
    """Today's gap: NGC's image had no Pillow (nor OpenCV) for the decode step. The check names what is missing."""
    requirements = locked_requirements(TRITON_IMAGE)
    del requirements["pillow"]
    env = build_env(TRITON_IMAGE, tmp_path / "env", find_python(TRITON_IMAGE.python), requirements)
    with pytest.raises(ImageCheckFailed) as failed:
        check_triton_imports(env, test_repository)
    message = str(failed.value)
    assert message.startswith("the Triton image (deploy/ecs/Dockerfile.triton) lacks `PIL`")
    assert "decode/1/imaging/header.py" in message and "package pillow" in message
    assert "deploy/ecs/triton-env/pyproject.toml" in message


def test_a_package_left_out_of_the_gateway_image_is_named(
    triton: TritonServer, photos: dict[str, np.ndarray], tmp_path: Path
) -> None:
    requirements = locked_requirements(GATEWAY_IMAGE)
    del requirements["prometheus-client"]
    env = build_gateway_env(tmp_path, requirements)
    photo = cv2.imencode(".jpg", photos["coffee"])[1].tobytes()
    with pytest.raises(ImageCheckFailed) as failed:
        gateway_classifies(env, triton.grpc_url, photo, tmp_path)
    message = str(failed.value)
    assert message.startswith("the gateway image (deploy/ecs/Dockerfile.gateway) lacks `prometheus_client`")
    assert "package prometheus_client" in message and "pyproject.toml (then `make lock`)" in message
