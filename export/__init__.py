"""Build time: torchvision ResNet, the OpenCV-style preprocessing and the edge detector -> ONNX -> Triton."""
