"""The peers a user would pick instead of this project, serving the same ONNX ResNet: two baselines.

- ``fastapi-ort``: a plain FastAPI app running ONNX Runtime in-process, one session, each request decoded with
  OpenCV, preprocessed like ``export.preprocess.reference_preprocess`` and run as a batch of one in FastAPI's
  thread pool: what most tutorials build.
- ``litserve``: LitServe with batching on (``max_batch_size``, ``batch_timeout``): requests are decoded and
  preprocessed one by one, then run through the same session as one batch.

Both read the exported ``model.onnx`` and ``labels.txt`` from the model repository, so model, weights and
pixels equal Triton's; both answer ``POST /v1/classify`` with the top-5 as the gateway does. The FastAPI app
takes the JPEG as the raw body; LitServe as a multipart ``file`` (its documented way to upload a file: it
parses bodies as JSON or forms). Run by ``python -m bench``, or by hand:
``python -m bench.peers litserve --repository model_repository --model resnet50 --port 8091``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import cv2
import litserve as ls  # type: ignore[import-untyped]  # ships no type information
import numpy as np
import onnxruntime as ort
import uvicorn
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from export.preprocess import reference_preprocess
from servables.names import LABELS, PROBABILITIES

TOP_K = 5
MAX_BATCH_SIZE = 8  # LitServe: at most this many requests per session run
BATCH_TIMEOUT_S = 0.005  # LitServe: how long a batch waits to fill
FASTAPI_ORT = "fastapi-ort"
LITSERVE = "litserve"
PATH = "/v1/classify"
UPLOAD_FIELD = "file"


class InvalidImage(ValueError):
    """The upload is not an image OpenCV can decode."""


class OrtClassifier:
    """The exported ResNet in one ONNX Runtime session (default threading), with its labels."""

    def __init__(self, repository: Path, model: str) -> None:
        folder = repository / model
        self.model = model
        self.session = ort.InferenceSession(str(folder / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.labels = (folder / LABELS).read_text().splitlines()

    @staticmethod
    def preprocess(jpeg: bytes) -> np.ndarray:
        """JPEG bytes -> ``float32 [3, 224, 224]``; OpenCV asserts (rather than returning None) on no bytes."""
        bgr = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR) if jpeg else None
        if bgr is None:
            raise InvalidImage("the upload is not a decodable image")
        return reference_preprocess(bgr)

    def top_k(self, batch: np.ndarray) -> list[list[dict[str, Any]]]:
        """Top-5 of each image of a ``float32 [N, 3, 224, 224]`` batch: the network's own softmax output."""
        (probabilities,) = self.session.run([PROBABILITIES], {self.input: batch})
        answers = []
        for row in probabilities:
            best = np.argsort(row)[::-1][:TOP_K]
            answers.append([{"label": self.labels[i], "index": int(i), "probability": float(row[i])} for i in best])
        return answers

    def answer(self, predictions: list[dict[str, Any]]) -> dict[str, Any]:
        return {"model": self.model, "predictions": predictions}

    def __call__(self, jpeg: bytes) -> dict[str, Any]:
        return self.answer(self.top_k(self.preprocess(jpeg)[np.newaxis])[0])


def create_fastapi_ort_app(repository: Path, model: str) -> FastAPI:
    """The plain app: decode, preprocess and a batch-of-one session run per request, in the thread pool."""
    classifier = OrtClassifier(repository, model)
    app = FastAPI(title=f"FastAPI + ONNX Runtime {model}")

    @app.post(PATH)
    async def classify(request: Request) -> JSONResponse:
        try:
            return JSONResponse(await run_in_threadpool(classifier, await request.body()))
        except InvalidImage as exc:
            return JSONResponse({"error": {"code": "invalid_image", "message": str(exc)}}, status_code=422)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


class ResNetAPI(ls.LitAPI):
    """LitServe's side: per-request decode and preprocessing, then one session run per batch. Module level,
    because LitServe pickles it into its worker process."""

    def __init__(self, repository: Path, model: str) -> None:
        super().__init__(max_batch_size=MAX_BATCH_SIZE, batch_timeout=BATCH_TIMEOUT_S, api_path=PATH)
        self.repository = repository
        self.model = model

    def setup(self, device: str) -> None:
        self.classifier = OrtClassifier(self.repository, self.model)

    # No annotation on ``request``: LitServe reads it to choose the parsing, and only a bare parameter gets the
    # request itself (its form, for a multipart upload).
    def decode_request(self, request) -> np.ndarray:
        try:
            return OrtClassifier.preprocess(request[UPLOAD_FIELD].file.read())
        except (InvalidImage, KeyError, AttributeError) as exc:
            raise HTTPException(422, f"upload a decodable image as multipart field {UPLOAD_FIELD!r}") from exc

    def batch(self, inputs: list[np.ndarray]) -> np.ndarray:
        return np.stack(inputs)

    def predict(self, batch: np.ndarray) -> list[list[dict[str, Any]]]:
        return self.classifier.top_k(batch)

    def unbatch(self, output: list[list[dict[str, Any]]]) -> list[list[dict[str, Any]]]:
        return output

    def encode_response(self, predictions: list[dict[str, Any]]) -> dict[str, Any]:
        return self.classifier.answer(predictions)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=(FASTAPI_ORT, LITSERVE))
    parser.add_argument("--repository", type=Path, required=True, help="the exported model repository")
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8091)
    args = parser.parse_args(argv)
    if args.kind == FASTAPI_ORT:
        uvicorn.run(
            create_fastapi_ort_app(args.repository, args.model), host=args.host, port=args.port, log_level="warning"
        )
    else:
        server = ls.LitServer(ResNetAPI(args.repository, args.model), accelerator="cpu", workers_per_device=1)
        server.run(host=args.host, port=args.port, num_api_servers=1, log_level="warning", generate_client_file=False)


if __name__ == "__main__":
    main()
