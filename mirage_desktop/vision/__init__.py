"""Face vision on ONNX Runtime (detection, tracking, landmarks): a library that knows nothing of the engine."""
