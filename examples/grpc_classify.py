"""Classify an image by calling Triton directly over gRPC, without the gateway.

    python examples/grpc_classify.py photo.jpg [--url 127.0.0.1:8001] [--top-k 5]

The `classify` ensemble takes the decoded image as uint8 [1, H, W, 3] BGR (what cv2.imdecode returns) and
answers top-k "probability:index:label" strings through Triton's classification extension.
"""

from __future__ import annotations

import argparse
import json
import sys

import cv2
import numpy as np
import tritonclient.grpc as grpcclient


def classify(client: grpcclient.InferenceServerClient, image_bgr: np.ndarray, top_k: int = 5) -> list[dict]:
    image = grpcclient.InferInput("IMAGE", [1, *image_bgr.shape], "UINT8")
    image.set_data_from_numpy(image_bgr[None])
    wanted = grpcclient.InferRequestedOutput("PROBABILITIES", class_count=top_k)
    result = client.infer("classify", [image], outputs=[wanted])
    predictions = []
    for entry in result.as_numpy("PROBABILITIES")[0]:
        probability, index, label = entry.decode().split(":", 2)
        predictions.append({"label": label, "index": int(index), "probability": float(probability)})
    return predictions


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("image", help="a JPEG, PNG, WebP, BMP or TIFF file")
    parser.add_argument("--url", default="127.0.0.1:8001", help="Triton's gRPC address (default: %(default)s)")
    parser.add_argument("--top-k", type=int, default=5)
    args = parser.parse_args()
    image = cv2.imread(args.image, cv2.IMREAD_COLOR)  # honours EXIF orientation, always 3-channel BGR
    if image is None:
        parser.error(f"{args.image}: not a readable image")
    client = grpcclient.InferenceServerClient(args.url)
    print(json.dumps(classify(client, image, args.top_k), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
