"""Scenario 4's baseline, the seed's naive design: eager PyTorch inside the request handler, no batching.

Each request decodes its JPEG with OpenCV, preprocesses it in numpy and runs one forward pass of the
torchvision model on its own. The handler hands that work to Starlette's thread pool, as a plain ``def``
endpoint would, so concurrent requests run concurrent batch-of-one forward passes. Weights, class names and
the preprocessing are the export's own (``export.network``, ``export.preprocess``), so the comparison with
Triton isolates the serving design: same model, same pixels, same device.

Run it like the gateway: ``python -m bench.naive --model resnet50 --port 8090`` (``python -m bench`` does).
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np
import torch
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from export.network import class_names, load_backbone
from export.preprocess import reference_preprocess

TOP_K = 5


class InvalidImage(ValueError):
    """The body is not an image OpenCV can decode."""


class Classifier:
    """One model on one device, answering one image at a time."""

    def __init__(self, model_name: str, weights: str, device: str) -> None:
        self.device = torch.device(device)
        self.model = load_backbone(model_name, weights).to(self.device)
        self.labels = class_names(model_name)

    def __call__(self, jpeg: bytes) -> list[dict[str, object]]:
        # OpenCV asserts (rather than returning None) on an empty buffer.
        bgr = cv2.imdecode(np.frombuffer(jpeg, dtype=np.uint8), cv2.IMREAD_COLOR) if jpeg else None
        if bgr is None:
            raise InvalidImage("the body is not a decodable image")
        batch = torch.from_numpy(reference_preprocess(bgr)[np.newaxis]).to(self.device)
        with torch.no_grad():
            probabilities = torch.softmax(self.model(batch), dim=1)[0]
        scores, indices = probabilities.topk(TOP_K)
        return [
            {"index": index, "label": self.labels[index], "score": score}
            for score, index in zip(scores.tolist(), indices.tolist(), strict=True)
        ]


def create_naive_app(model_name: str = "resnet50", weights: str = "seed:0", device: str = "cpu") -> FastAPI:
    """The baseline service: ``POST /v1/classify`` with a raw JPEG body answers the top-5 classes."""
    classifier = Classifier(model_name, weights, device)
    app = FastAPI(title=f"naive {model_name} baseline")

    @app.post("/v1/classify")
    async def classify(request: Request) -> JSONResponse:
        try:
            predictions = await run_in_threadpool(classifier, await request.body())
        except InvalidImage as exc:
            return JSONResponse({"error": {"code": "invalid_image", "message": str(exc)}}, status_code=422)
        return JSONResponse({"model": model_name, "predictions": predictions})

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.naive", description=create_naive_app.__doc__)
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--weights", default="seed:0", help="as for python -m export (default: %(default)s)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: %(default)s)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    args = parser.parse_args(argv)
    app = create_naive_app(args.model, args.weights, args.device)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
