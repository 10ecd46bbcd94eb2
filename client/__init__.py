"""``tritonserve``: classify or edge-map many images from the command line, through the gateway or Triton's gRPC."""
