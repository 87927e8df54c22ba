"""The TFLite backend: a ``.tflite`` file (float or int8) run with a chosen set of kernels.
:func:`make_interpreter` is the one place a ``tf.lite.Interpreter`` is built.

Kernels (``kernels=``, ``--kernels`` on the CLI):

* ``tflm``: the TensorFlow Lite Micro runtime itself (PyPI ``tflite-micro``), one image at a
  time: what a microcontroller computes.
* ``ref``: ``tf.lite.Interpreter`` with ``OpResolverType.BUILTIN_REF`` (the reference kernels
  TFLM shares; tests/test_tflm.py shows it bit-exact with TFLM on every head option), batched
  and faster than ``tflm``.
* ``xnnpack``: the default optimised kernels with the XNNPACK delegate (CPU deployment); on
  int8 models its outputs differ from TFLM's by a few quantisation steps.
* ``auto`` (default): ``ref`` for a quantised model, ``xnnpack`` for a float one.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from utod.errors import CheckpointError, ConfigError
from utod.infer.detector import Detector, run_batched
from utod.infer.metadata import read_tflite_metadata
from utod.infer.modelinfo import ModelInfo
from utod.quiet import quiet_fd2

KERNEL_CHOICES = ("auto", "tflm", "ref", "xnnpack")
KERNEL_DESCRIPTIONS = {
    "tflm": "TFLite Micro runtime (reference kernels: what a microcontroller runs)",
    "ref": "tf.lite BUILTIN_REF reference kernels (bit-exact with TFLite Micro, tested)",
    "xnnpack": "tf.lite optimised kernels + XNNPACK (CPU deployment; not bit-exact with TFLite Micro)",
}


def describe_kernels(kernels: str) -> str:
    """One line naming kernels that ran, e.g. for the export summary and ``utod eval``."""
    return f"{kernels} ({KERNEL_DESCRIPTIONS.get(kernels, '?')})"


def make_interpreter(content: bytes, threads: int | None = None, kernels: str = "xnnpack") -> Any:
    """A ``tf.lite.Interpreter`` over the flatbuffer ``content``, tensors allocated;
    ``kernels`` "xnnpack" (default resolver + XNNPACK) or "ref" (BUILTIN_REF)."""
    from utod._keras import tf

    resolvers = {"xnnpack": tf.lite.experimental.OpResolverType.AUTO,
                 "ref": tf.lite.experimental.OpResolverType.BUILTIN_REF}
    if kernels not in resolvers:
        raise ConfigError(f"tf.lite kernels must be one of {', '.join(resolvers)}, got '{kernels}'")
    with warnings.catch_warnings(), quiet_fd2():  # deprecation notice, XNNPACK banner
        warnings.simplefilter("ignore")
        interpreter = tf.lite.Interpreter(model_content=content, num_threads=threads,
                                          experimental_op_resolver_type=resolvers[kernels])
        interpreter.allocate_tensors()
    return interpreter


def resolve_kernels(kernels: str, quantised: bool) -> str:
    """``auto`` -> ``ref`` (quantised) / ``xnnpack`` (float); other names are checked."""
    if kernels not in KERNEL_CHOICES:
        raise ConfigError(f"--kernels must be one of {', '.join(KERNEL_CHOICES)}, got '{kernels}'")
    if kernels == "auto":
        return "ref" if quantised else "xnnpack"
    return kernels


class TfliteDetector(Detector):
    """A TFLite file (float or int8) run with ``kernels`` (module docstring).

    ``kernels_used`` names the kernels that ran; ``input_detail`` has the input's ``dtype``,
    ``shape`` and ``quantization`` (scale, zero point).
    """

    kind = "tflite"

    def __init__(self, path: str, threads: int | None = None, kernels: str = "auto") -> None:
        from utod.deploy.tflm import io_tensors

        try:
            content = Path(path).read_bytes()
            info_json = read_tflite_metadata(content)
            inputs, outputs = io_tensors(content)
        except CheckpointError:
            raise
        except Exception as exc:
            raise CheckpointError(f"{path}: not a loadable TFLite model ({type(exc).__name__}: {exc})") from exc
        if info_json is None:
            raise CheckpointError(f"{path}: no utod metadata (export it with `utod export --format tflite`)")
        super().__init__(path, ModelInfo.from_json(info_json, path))
        quantised = inputs[0].dtype != "float32"
        self.kernels_used = resolve_kernels(kernels, quantised)
        self._tflm = None
        self.interpreter = None
        try:
            if self.kernels_used == "tflm":
                from utod.deploy.tflm import TflmRunner

                self._tflm = TflmRunner(content)
            else:
                self.interpreter = make_interpreter(content, threads, self.kernels_used)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        except Exception as exc:
            raise CheckpointError(f"{path}: not a loadable TFLite model ({type(exc).__name__}: {exc})") from exc
        if self.interpreter is not None:
            self.input_detail = self.interpreter.get_input_details()[0]
            details = self.interpreter.get_output_details()
        else:
            self.input_detail = _detail(inputs[0])
            details = [_detail(t) for t in outputs]
        if self.info.raw_groups and len(self.info.raw_groups) == len(details):
            self.output_details = list(zip(self.info.raw_groups, details))  # subgraph order, from export
        else:
            self.output_details = name_tflite_outputs(details, self.info)
        self.static_batch = int(self.input_detail["shape"][0])

    def _quantise(self, x: np.ndarray) -> np.ndarray:
        d = self.input_detail
        if d["dtype"] == np.float32:
            return x
        scale, zero = d["quantization"]
        info = np.iinfo(d["dtype"])
        return np.clip(np.round(x / scale + zero), info.min, info.max).astype(d["dtype"])

    def _run_int(self, xq: np.ndarray) -> list[np.ndarray]:
        """Input in the tensor's own dtype -> outputs in theirs (no dequantisation)."""
        if self._tflm is not None:
            per_image = [self._tflm.run(xq[i:i + 1]) for i in range(xq.shape[0])]
            return [np.concatenate([o[k] for o in per_image]) for k in range(len(self.output_details))]
        d = self.input_detail
        self.interpreter.set_tensor(d["index"], xq)
        self.interpreter.invoke()
        return [self.interpreter.get_tensor(detail["index"]).copy() for _, detail in self.output_details]

    def _run(self, x: np.ndarray) -> list[np.ndarray]:
        outs = []
        for (_, detail), y in zip(self.output_details, self._run_int(self._quantise(x))):
            if detail["dtype"] in (np.int8, np.uint8, np.int16):
                scale, zero = detail["quantization"]
                y = (y.astype(np.float32) - zero) * scale
            outs.append(y)
        return outs

    def forward(self, images: np.ndarray) -> dict[str, np.ndarray]:
        x = np.asarray(images, np.float32)
        if self.info.input_layout == "nchw":
            x = np.ascontiguousarray(np.transpose(x, (0, 3, 1, 2)))
        batch = 1 if self._tflm is not None else self.static_batch
        return run_batched(self._run, x, batch if batch != x.shape[0] else None,
                           [n for n, _ in self.output_details])

    def forward_quantised(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Like ``forward`` but the outputs stay in the tensors' integer dtype (e.g. int8),
        what firmware reads from ``interpreter.output(i)``."""
        x = np.asarray(images, np.float32)
        if self.info.input_layout == "nchw":
            x = np.ascontiguousarray(np.transpose(x, (0, 3, 1, 2)))
        outs = [self._run_int(self._quantise(x[i:i + 1])) for i in range(x.shape[0])]
        return {name: np.concatenate([o[k] for o in outs]) for k, (name, _) in enumerate(self.output_details)}


def _detail(t: Any) -> dict[str, Any]:
    """A ``utod.deploy.tflm.TensorQuant`` as a tf.lite-style detail dict."""
    return {"name": t.name, "shape": np.asarray(t.shape), "dtype": np.dtype(t.dtype),
            "quantization": (t.scale or 0.0, t.zero_point or 0)}


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
