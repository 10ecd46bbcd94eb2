"""The peers a user would pick instead of this project, serving the same ONNX ResNet: three baselines.

- ``fastapi-ort``: a plain FastAPI app running ONNX Runtime in-process, one session, each request decoded with
  OpenCV, preprocessed like ``export.preprocess.reference_preprocess`` and run as a batch of one in FastAPI's
  thread pool: what most tutorials build.
- ``litserve``: LitServe with batching on (``max_batch_size``, ``batch_timeout``) and a worker process per core:
  requests are decoded and preprocessed one by one, then run through a worker's session as one batch.
- ``fastapi-triton``: a hand-written FastAPI app in front of the same Triton, what a user who already runs Triton
  writes instead of this gateway: the raw body as the classify ensemble's ``IMAGE`` through
  ``tritonclient.grpc.aio``, the top-5 through Triton's classification extension; no header check, limits, request
  ids, logs, metrics or traces. Its CPU per request is what FastAPI, uvicorn and tritonclient cost on their own.

Each runs at its best documented settings (``BEST``; every one can be overridden on the command line).

The first two read the exported ``model.onnx`` and ``labels.txt`` from the model repository, so model, weights and
pixels equal Triton's; all three answer ``POST /v1/classify`` with the top-5 as the gateway does. The FastAPI app
takes the JPEG as the raw body; LitServe as a multipart ``file`` (its documented way to upload a file: it
parses bodies as JSON or forms). Run by ``python -m bench``, or by hand:
``python -m bench.peers litserve --repository model_repository --model resnet50 --port 8091``, or
``python -m bench.peers fastapi-triton --triton-url 127.0.0.1:8001 --port 8092``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import litserve as ls  # type: ignore[import-untyped]  # ships no type information
import numpy as np
import onnxruntime as ort
import tritonclient.grpc.aio as triton
import uvicorn
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from tritonclient.utils import InferenceServerException

from export.preprocess import reference_preprocess
from servables.classification import parse_predictions
from servables.names import CLASSIFY, IMAGE, LABELS, PROBABILITIES

TOP_K = 5
FASTAPI_ORT = "fastapi-ort"
LITSERVE = "litserve"
FASTAPI_TRITON = "fastapi-triton"
PATH = "/v1/classify"
UPLOAD_FIELD = "file"


class InvalidImage(ValueError):
    """The upload is not an image OpenCV can decode."""


@dataclass(frozen=True)
class Threads:
    """An ONNX Runtime session's threading: intra-op threads (0: ORT's default, a thread per physical core) and
    whether idle workers spin (None: ORT's default, they do)."""

    intra_op: int = 0
    spinning: bool | None = None

    def options(self) -> ort.SessionOptions:
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.intra_op
        if self.spinning is not None:
            options.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.spinning else "0")
        return options


@dataclass(frozen=True)
class Settings:
    """How a peer runs: its sessions' threads, and for LitServe its workers (0: one per core) and batching."""

    threads: Threads
    workers: int = 1
    max_batch_size: int = 1
    batch_timeout_s: float = 0.0

    def describe(self) -> str:
        threads = f"{self.threads.intra_op} intra-op thread(s)" if self.threads.intra_op else "ORT's default threads"
        spinning = {None: "", True: ", spinning", False: ", spinning off"}[self.threads.spinning]
        if self.max_batch_size <= 1:
            return threads + spinning
        workers = f"{self.workers} worker(s)" if self.workers else "a worker per core"
        return (
            f"{workers} of {threads}{spinning}, batching on (max_batch_size {self.max_batch_size}, batch_timeout "
            f"{self.batch_timeout_s * 1000:g} ms)"
        )


# Each peer at its best documented settings (issue 23), measured against the alternatives (interleaved, CPU per
# request by process, in the commit that set them). Spinning off for both: ONNX Runtime's idle workers
# otherwise spin on the cores the peer's own HTTP handling and decode need (1.5x the CPU per request at c=1 here).
# The FastAPI app serves each request with the whole machine (ORT's default threads: a lone request is fast).
# LitServe as its documentation says for a CPU: a worker per core (each session on one thread), batching on.
BEST = {
    FASTAPI_ORT: Settings(Threads(spinning=False)),
    LITSERVE: Settings(Threads(intra_op=1, spinning=False), workers=0, max_batch_size=16, batch_timeout_s=0.005),
}


class OrtClassifier:
    """The exported ResNet in one ONNX Runtime session, with its labels."""

    def __init__(self, repository: Path, model: str, threads: Threads = Threads()) -> None:
        folder = repository / model
        self.model = model
        self.session = ort.InferenceSession(
            str(folder / "1" / "model.onnx"), threads.options(), providers=["CPUExecutionProvider"]
        )
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


def create_fastapi_ort_app(repository: Path, model: str, threads: Threads = Threads()) -> FastAPI:
    """The plain app: decode, preprocess and a batch-of-one session run per request, in the thread pool."""
    classifier = OrtClassifier(repository, model, threads)
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


def create_fastapi_triton_app(triton_url: str) -> FastAPI:
    """The hand-written relay: the body as it came to Triton's classify ensemble, its top-5 as JSON."""
    clients: list[triton.InferenceServerClient] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        clients.append(triton.InferenceServerClient(triton_url))  # a grpc.aio channel belongs to its loop
        yield
        await clients.pop().close()

    app = FastAPI(title="FastAPI in front of Triton", lifespan=lifespan)

    @app.post(PATH)
    async def classify(request: Request) -> JSONResponse:
        image = np.frombuffer(await request.body(), np.uint8)[np.newaxis]
        tensor = triton.InferInput(IMAGE, list(image.shape), "UINT8")
        tensor.set_data_from_numpy(image)
        wanted = [triton.InferRequestedOutput(PROBABILITIES, class_count=TOP_K)]
        try:
            result = await clients[0].infer(CLASSIFY, [tensor], outputs=wanted)
        except InferenceServerException as exc:
            status = 422 if "INVALID_ARGUMENT" in (exc.status() or "") else 503
            return JSONResponse({"error": {"code": "triton", "message": exc.message()}}, status_code=status)
        predictions = [vars(p) for p in parse_predictions(result.as_numpy(PROBABILITIES).reshape(-1))]
        return JSONResponse({"model": CLASSIFY, "predictions": predictions})

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


class ResNetAPI(ls.LitAPI):
    """LitServe's side: per-request decode and preprocessing, then one session run per batch. Module level,
    because LitServe pickles it into its worker process."""

    def __init__(
        self, repository: Path, model: str, threads: Threads, max_batch_size: int, batch_timeout_s: float
    ) -> None:
        super().__init__(max_batch_size=max_batch_size, batch_timeout=batch_timeout_s, api_path=PATH)
        self.repository = repository
        self.model = model
        self.threads = threads

    def setup(self, device: str) -> None:
        self.classifier = OrtClassifier(self.repository, self.model, self.threads)

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
    parser.add_argument("kind", choices=(FASTAPI_ORT, LITSERVE, FASTAPI_TRITON))
    parser.add_argument("--repository", type=Path, help="the exported model repository (the ONNX Runtime peers)")
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--triton-url", help="Triton's gRPC address, host:port (fastapi-triton)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8091)
    tuning = parser.add_argument_group("settings (default: each peer's best here, see BEST)")
    tuning.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads per session (0: its default)")
    tuning.add_argument("--spinning", choices=("on", "off", "default"), help="ONNX Runtime's idle workers spin")
    tuning.add_argument("--workers", type=int, help="LitServe: inference worker processes")
    tuning.add_argument("--max-batch-size", type=int, help="LitServe: requests per session run at most")
    tuning.add_argument("--batch-timeout-ms", type=float, help="LitServe: how long a batch waits to fill")
    args = parser.parse_args(argv)
    if args.kind == FASTAPI_TRITON:
        if not args.triton_url:
            parser.error("fastapi-triton relays to a Triton: give --triton-url")
        uvicorn.run(create_fastapi_triton_app(args.triton_url), host=args.host, port=args.port, log_level="warning")
        return
    if args.repository is None:
        parser.error(f"{args.kind} loads the exported model: give --repository")
    best = BEST[args.kind]
    spinning = {"on": True, "off": False, "default": None}[args.spinning] if args.spinning else best.threads.spinning
    threads = Threads(best.threads.intra_op if args.threads is None else args.threads, spinning)
    if args.kind == FASTAPI_ORT:
        app = create_fastapi_ort_app(args.repository, args.model, threads)
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    else:
        api = ResNetAPI(
            args.repository, args.model, threads, args.max_batch_size or best.max_batch_size,
            (best.batch_timeout_s if args.batch_timeout_ms is None else args.batch_timeout_ms / 1000),
        )  # fmt: skip
        workers = args.workers or best.workers or len(os.sched_getaffinity(0))
        server = ls.LitServer(api, accelerator="cpu", workers_per_device=workers)
        server.run(host=args.host, port=args.port, num_api_servers=1, log_level="warning", generate_client_file=False)


if __name__ == "__main__":
    main()
