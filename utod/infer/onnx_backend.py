"""The ONNX backend: an exported ``.onnx`` file run by ONNX Runtime on the CPU."""

from __future__ import annotations

import numpy as np

from utod.errors import CheckpointError
from utod.infer.detector import Detector, run_batched
from utod.infer.metadata import onnx_model_info


class OnnxDetector(Detector):
    """An ONNX file run by onnxruntime (CPU); needs the utod metadata ``utod export`` writes."""

    kind = "onnx"

    def __init__(self, path: str, threads: int | None = None) -> None:
        import onnxruntime as ort

        ort.set_default_logger_severity(3)  # e.g. the nearest-Resize 'tf_half_pixel_for_nn' notice
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        # idle intra-op threads sleep instead of spinning: on a busy or small CPU (image
        # decoding runs beside the model) spinning threads steal the cores they wait for
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            opts.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for bad files
            raise CheckpointError(f"{path}: not a loadable ONNX model ({type(exc).__name__}: {exc})") from exc
        super().__init__(path, onnx_model_info(self.session, path))
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.static_batch = inp.shape[0] if isinstance(inp.shape[0], int) else None
        self.output_names = [o.name for o in self.session.get_outputs()]

    def _run(self, x: np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, {self.input_name: x})

    def forward(self, images: np.ndarray) -> dict[str, np.ndarray]:
        x = np.asarray(images, np.float32)
        if self.info.input_layout == "nchw":
            x = np.ascontiguousarray(np.transpose(x, (0, 3, 1, 2)))
        return run_batched(self._run, x, self.static_batch, self.output_names)
