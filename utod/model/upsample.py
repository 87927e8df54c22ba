"""2x nearest-neighbour upsampling: one function, two lowerings with identical values.

* Inference / export graph (``training`` false): stack the tensor with itself and reshape,
  pure data movement that lowers to PACK + RESHAPE. TFLite and TensorFlow Lite Micro both
  register those ops (float32, int8, int16). ``tf.repeat`` would lower to TILE, which TFLM
  has no kernel for, so an int8 export using it cannot be loaded on a microcontroller.
* Training graph (``training`` true): ``tf.repeat`` twice, as before. It is the faster of the
  two under XLA (``--use-xla``) and equal in plain graph mode, so the train step keeps its
  speed; ``tf.image.resize(nearest)`` is not used because its gradient does not compile
  under XLA.

Both give ``y[:, i, j] = x[:, i // 2, j // 2]`` exactly (tests/test_upsample.py).
"""

from __future__ import annotations

from utod._keras import tf


def upsample_nearest_2x(x, out_h=None, out_w=None, training=None):
    """x [B, h, w, C] (NHWC) -> [B, 2h, 2w, C] with ``y[:, i, j] = x[:, i // 2, j // 2]``,
    cropped to ``out_h`` x ``out_w`` (output grid cells; ``None``: no crop).

    ``training`` true: ``tf.repeat`` lowering (training graph); otherwise PACK + RESHAPE
    with the static h, w, C when the graph knows them, so an exported graph with a fixed
    batch has only constant shapes (TFLM cannot run run-time shape arithmetic).
    """
    if training is True:
        y = tf.repeat(tf.repeat(x, 2, axis=1), 2, axis=2)
    else:
        static = x.shape
        dyn = tf.shape(x)
        h = static[1] if static[1] is not None else dyn[1]
        w = static[2] if static[2] is not None else dyn[2]
        c = static[3] if static[3] is not None else dyn[3]
        b = static[0] if static[0] is not None else dyn[0]
        y = tf.reshape(tf.stack([x, x], axis=3), [b, h, 2 * w, c])  # duplicate columns
        y = tf.reshape(tf.stack([y, y], axis=2), [b, 2 * h, 2 * w, c])  # duplicate rows
    full_h, full_w = y.shape[1], y.shape[2]
    crop_h = out_h is not None and not (isinstance(out_h, int) and out_h == full_h)
    crop_w = out_w is not None and not (isinstance(out_w, int) and out_w == full_w)
    if crop_h or crop_w:
        y = y[:, :out_h, :out_w]
    return y
