"""The TFLite backend: a ``.tflite`` file (float or int8) run by the TensorFlow Lite
interpreter. :func:`make_interpreter` is the one place the interpreter is built."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from utod.errors import CheckpointError
from utod.infer.detector import Detector, run_batched
from utod.infer.metadata import read_tflite_metadata
from utod.infer.modelinfo import ModelInfo
from utod.quiet import quiet_fd2


def make_interpreter(content: bytes, threads: int | None = None) -> Any:
    """A ``tf.lite.Interpreter`` over the flatbuffer ``content``, tensors allocated."""
    from utod._keras import tf

    with warnings.catch_warnings(), quiet_fd2():  # deprecation notice, XNNPACK banner
        warnings.simplefilter("ignore")
        interpreter = tf.lite.Interpreter(model_content=content, num_threads=threads)
        interpreter.allocate_tensors()
    return interpreter


class TfliteDetector(Detector):
    """A TFLite file (float or int8) run by the TensorFlow Lite interpreter."""

    kind = "tflite"

    def __init__(self, path: str, threads: int | None = None) -> None:
        try:
            content = Path(path).read_bytes()
            info_json = read_tflite_metadata(content)
            self.interpreter = make_interpreter(content, threads)
        except CheckpointError:
            raise
        except Exception as exc:
            raise CheckpointError(f"{path}: not a loadable TFLite model ({type(exc).__name__}: {exc})") from exc
        if info_json is None:
            raise CheckpointError(f"{path}: no utod metadata (export it with `utod export --format tflite`)")
        super().__init__(path, ModelInfo.from_json(info_json, path))
        self.input_detail = self.interpreter.get_input_details()[0]
        outs = self.interpreter.get_output_details()
        self.output_details = name_tflite_outputs(outs, self.info)
        self.static_batch = int(self.input_detail["shape"][0])

    def _run(self, x: np.ndarray) -> list[np.ndarray]:
        d = self.input_detail
        if d["dtype"] != np.float32:
            scale, zero = d["quantization"]
            x = np.clip(np.round(x / scale + zero), np.iinfo(d["dtype"]).min, np.iinfo(d["dtype"]).max).astype(d["dtype"])
        self.interpreter.set_tensor(d["index"], x)
        self.interpreter.invoke()
        outs = []
        for _, detail in self.output_details:
            y = self.interpreter.get_tensor(detail["index"])
            if detail["dtype"] in (np.int8, np.uint8, np.int16):
                scale, zero = detail["quantization"]
                y = (y.astype(np.float32) - zero) * scale
            outs.append(y)
        return outs

    def forward(self, images: np.ndarray) -> dict[str, np.ndarray]:
        x = np.asarray(images, np.float32)
        if self.info.input_layout == "nchw":
            x = np.ascontiguousarray(np.transpose(x, (0, 3, 1, 2)))
        return run_batched(self._run, x, self.static_batch, [n for n, _ in self.output_details])


def name_tflite_outputs(details: list[dict[str, Any]], info: ModelInfo) -> list[tuple[str, dict[str, Any]]]:
    """TFLite renames outputs (``StatefulPartitionedCall:0``...); identify them by shape."""
    named = []
    for d in details:
        shape = tuple(int(s) for s in d["shape"])
        if len(shape) == 4:
            name = "raw"
        elif len(shape) == 3 and shape[-1] == 6:
            name = "detections"
        elif len(shape) == 1:
            name = "num_detections"
        elif len(shape) == 2 and shape == (info.num_anchors, 2):
            name = "anchors" if "anchors" not in {n for n, _ in named} else "wh_scale"
        else:
            name = d["name"]
        named.append((name, d))
    return named
