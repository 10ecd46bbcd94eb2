"""Classify an image by calling Triton directly over gRPC, without the gateway.

    python examples/grpc_classify.py photo.jpg [--model classify] [--url HOST:PORT] [--top-k 5] [--pixels]

Triton's address is the one ``make serve`` prints on its "Triton    gRPC" line: ``--url``, else
``$TRITONSERVE_TRITON_URL`` (what the command-line client reads), else 127.0.0.1:8001.

A classifier's ensemble (`classify`, or one of your own: `python -m export classifier NAME`) takes the file's bytes
as they are (uint8 [1, nbytes]) and decodes them inside Triton, at the scale its preprocessing needs; `--pixels`
sends decoded BGR pixels (uint8 [1, H, W, 3], what cv2.imdecode returns) to its pixel entry point, `<model>_pixels`,
instead. Both answer top-k "probability:index:label" strings through Triton's classification extension, and
MODEL_ID: the version and weights of the network that ran (printed on stderr).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import cv2
import numpy as np
import tritonclient.grpc as grpcclient

from servables import names
from servables.classification import PIXELS_SUFFIX, Identity


def classify(
    client: grpcclient.InferenceServerClient, tensor: np.ndarray, model: str = names.CLASSIFY, top_k: int = 5
) -> tuple[list[dict], Identity]:
    image = grpcclient.InferInput(names.IMAGE, list(tensor.shape), "UINT8")
    image.set_data_from_numpy(tensor)
    wanted = [
        grpcclient.InferRequestedOutput(names.PROBABILITIES, class_count=top_k),
        grpcclient.InferRequestedOutput(names.MODEL_ID),
    ]
    result = client.infer(model, [image], outputs=wanted)
    predictions = []
    for entry in result.as_numpy(names.PROBABILITIES)[0]:
        probability, index, label = entry.decode().split(":", 2)
        predictions.append({"label": label, "index": int(index), "probability": float(probability)})
    return predictions, Identity.decode(result.as_numpy(names.MODEL_ID)[0][0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("image", help="a JPEG, PNG, WebP, BMP or TIFF file")
    parser.add_argument("--model", default=names.CLASSIFY, help="the classifier (default: %(default)s)")
    parser.add_argument(
        "--url",
        default=os.environ.get("TRITONSERVE_TRITON_URL", "127.0.0.1:8001"),
        help="Triton's gRPC address (default: $TRITONSERVE_TRITON_URL or %(default)s)",
    )
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--pixels", action="store_true", help="decode here and send pixels to <model>_pixels")
    args = parser.parse_args()
    client = grpcclient.InferenceServerClient(args.url)
    if args.pixels:
        image = cv2.imread(args.image, cv2.IMREAD_COLOR)  # honours EXIF orientation, always 3-channel BGR
        if image is None:
            parser.error(f"{args.image}: not a readable image")
        predictions, identity = classify(client, image[np.newaxis], args.model + PIXELS_SUFFIX, args.top_k)
    else:
        with open(args.image, "rb") as file:
            encoded = np.frombuffer(file.read(), np.uint8)[np.newaxis]
        predictions, identity = classify(client, encoded, args.model, args.top_k)
    print(json.dumps(predictions, indent=2))
    print(f"{args.model}: version {identity.version} of its network, weights {identity.weights}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
