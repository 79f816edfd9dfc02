"""Deployment of a trained network: ONNX (float, or Q/DQ int8 from QAT) and running it in onnxruntime (``onnx``),
the CPU int8 form with integer kernels (``cpu_int8``), a TensorRT engine (``tensorrt``), and the check that an
exported file computes what the network computes (``verify``)."""
