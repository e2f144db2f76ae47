"""Exporting trained models for deployment outside ESPnet (``onnx_ctc``: the CTC path to ONNX)."""
