"""The FastAPI gateway: REST in, gRPC to Triton out, CRUD beside it."""

import os

# OpenCV reads its decode limit once, at import: set it before anything imports cv2. The gateway's own check
# (from the image header, before decoding) uses the same limit and answers 413; this one is defence in depth.
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", os.environ.get("GATEWAY_MAX_IMAGE_PIXELS", "40000000"))
