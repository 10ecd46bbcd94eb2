"""Every model and tensor name the repository serves: renaming one is a change to this file.

Public entry points (what gRPC clients call):

- ``classify``: the file's bytes (``IMAGE``, ``uint8 [1, nbytes]``) -> ``PROBABILITIES``; ask Triton for top-k
  with ``class_count``. Decoded inside Triton at the scale the model needs.
- ``classify_pixels``: decoded pixels (``IMAGE``, ``uint8 [1, H, W, 3]`` BGR, as ``cv2.imdecode`` returns them)
  -> ``PROBABILITIES``: for clients that already hold decoded arrays.
- ``edges``: the file's bytes plus optional Canny parameters -> ``EDGES`` (``uint8 [1, H, W]``, 0 or 255).
- ``canny``: the edge detector on decoded pixels (``uint8 [1, H, W, 3]`` BGR) with the same parameters.

Every classifier answers ``MODEL_ID`` beside ``PROBABILITIES``: which version of its network ran, with which weights
(``servables.classification.Identity``). Classifiers exported with ``python -m export classifier NAME`` follow the
default's pattern under their own name: ``NAME`` (bytes), ``NAME_pixels`` (pixels), ``NAME_preprocess``,
``NAME_network``.

The raw-pixel entry points are ensembles headed by ``check_pixels``, which refuses what the upload rules refuse
(and, for ``canny``, parameters out of range) before any work: the ONNX graphs cannot refuse anything.
"""

from __future__ import annotations

# Ensembles and models.
CLASSIFY = "classify"
CLASSIFY_PIXELS = "classify_pixels"
EDGES = "edges"
CANNY = "canny"
CANNY_GRAPH = "canny_graph"  # the edge detector's ONNX graph, behind ``canny`` and ``edges``
CHECK_PIXELS = "check_pixels"  # decoded pixels -> the same pixels, once the upload rules and parameters hold
DECODE = "decode"  # encoded bytes -> full-resolution BGR pixels (the edge detector's input)
DECODE_REDUCED = "decode_reduced"  # encoded bytes -> BGR pixels at the smallest scale the classifier needs
PREPROCESS = "preprocess"

# Tensors.
IMAGE = "IMAGE"  # the encoded file (classify, edges, decode*) or decoded BGR pixels (classify_pixels, canny)
PIXELS = "PIXELS"  # decode* -> preprocess / canny, inside the ensembles
INPUT = "INPUT"  # the ResNet's normalised float32 [3, crop, crop]
LOGITS = "LOGITS"
PROBABILITIES = "PROBABILITIES"
MODEL_ID = "MODEL_ID"  # STRING [1]: the network's version and weights, as its export wrote them into its graph
EDGE_MAP = "EDGES"

# The edge detector's optional parameters: cv2.Canny's names and defaults, plus the grayscale/blur option.
LOW = "LOW"  # FP32 [1], default 100
HIGH = "HIGH"  # FP32 [1], default 200
APERTURE_SIZE = "APERTURE_SIZE"  # INT32 [1], 3, 5 or 7, default 3
L2_GRADIENT = "L2_GRADIENT"  # BOOL [1], default false
GRAY = "GRAY"  # BOOL [1], default false: convert to grayscale first (the pre-2026 pipeline)
BLUR = "BLUR"  # INT32 [1], Gaussian kernel size, 0 (default) for none, else odd
CANNY_PARAMETERS = (LOW, HIGH, APERTURE_SIZE, L2_GRADIENT, GRAY, BLUR)

# A request parameter (INT64, ns since the epoch): when the client stops waiting. Ensembles pass request parameters
# to every step, so a step's run can stop when it passes (onnx_runner.py spells it out: it is copied alone).
DEADLINE_PARAMETER = "deadline_unix_ns"

# The key of Triton's restricted gRPC protocol (the ECS opt-in endpoint, deploy/ecs/grpc_endpoint.py): Triton asks
# every call but health and metadata for the header ``triton-grpc-protocol-<name>`` with the key.
GRPC_KEY_NAME = "tritonserve-key"
GRPC_KEY_HEADER = f"triton-grpc-protocol-{GRPC_KEY_NAME}"

LABELS = "labels.txt"
