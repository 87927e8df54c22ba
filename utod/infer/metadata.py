"""The :class:`~utod.infer.modelinfo.ModelInfo` stored inside exported files.

ONNX: ``metadata_props`` (written from :meth:`ModelInfo.to_metadata`; the key ``utod_info``
holds the full JSON). TFLite: a flatbuffer metadata entry named ``utod`` holding the JSON.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from utod.errors import CheckpointError
from utod.infer.modelinfo import ModelInfo

METADATA_KEY = "utod"  # TFLite metadata entry holding the JSON of ModelInfo
ONNX_INFO_KEY = "utod_info"  # ONNX metadata_props key holding the JSON of ModelInfo


def onnx_model_info(session: Any, path: str) -> ModelInfo:
    """ModelInfo of an open ``onnxruntime.InferenceSession``; ``CheckpointError`` without one."""
    props = session.get_modelmeta().custom_metadata_map
    if ONNX_INFO_KEY not in props:
        raise CheckpointError(f"{path}: no utod metadata (export it with `utod export`)")
    return ModelInfo.from_json(props[ONNX_INFO_KEY], path)


def add_tflite_metadata(content: bytes, info_json: str) -> bytes:
    """Return the TFLite flatbuffer with a metadata entry ``utod`` holding ``info_json``."""
    from utod._keras import tf  # noqa: F401, I001  (quiet TF import first)
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(content))
    buf = schema.BufferT()
    buf.data = np.frombuffer(info_json.encode("utf-8"), np.uint8)
    model.buffers.append(buf)
    entry = schema.MetadataT()
    entry.name = METADATA_KEY
    entry.buffer = len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if m.name != METADATA_KEY.encode()] + [entry]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def read_tflite_metadata(content: bytes) -> str | None:
    """The ``utod`` metadata JSON of a TFLite flatbuffer, or ``None``."""
    from utod._keras import tf  # noqa: F401, I001
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.Model.GetRootAsModel(content, 0)
    for i in range(model.MetadataLength()):
        meta = model.Metadata(i)
        if meta.Name() and meta.Name().decode() == METADATA_KEY:
            data = model.Buffers(meta.Buffer()).DataAsNumpy()
            return bytes(data).decode("utf-8")
    return None
