"""Running a trained detector on images, one module per job.

* :mod:`utod.infer.modelinfo` — :class:`ModelInfo` (what a file needs to be fed and read),
  ``info_from_model``, the mAP decode threshold ``MAP_CONF_THRESH``.
* :mod:`utod.infer.metadata` — reading/writing the ModelInfo stored in ONNX and TFLite files.
* :mod:`utod.infer.preprocess` — ``read_image`` and :class:`Preprocessor` (the same as training).
* :mod:`utod.infer.decode` — raw map -> detections, and per-image detection tuples.
* :mod:`utod.infer.detector` — the backend-independent :class:`Detector` API.
* :mod:`utod.infer.keras_backend`, :mod:`utod.infer.onnx_backend`,
  :mod:`utod.infer.tflite_backend` — one backend each; :mod:`utod.infer.load` picks one by suffix.
* COCO mAP of a Detector on a labelled folder: :mod:`utod.evaluation` (the one evaluation
  path, shared with training-time validation).

Preprocessing (every backend, and training): decode with OpenCV (BGR) -> RGB uint8 -> the
checkpoint's resize backend plugin to the model input (H, W) (stretch, no letterbox) ->
float32 / 255. Batches are NHWC float32 [B, H, W, 3] in [0, 1]; an NCHW model gets them
transposed.

Detections are per image ``(boxes [K,4] normalised cxcywh, scores [K], labels [K])``, sorted
by score, the tuple :mod:`utod.metrics` takes. Raw-output models (``--no-post`` ONNX, TFLite)
are decoded with :func:`utod.model.postprocess.postprocess`, the same code the Keras path
uses, so every backend is scored the same way.
"""
