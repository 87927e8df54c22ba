"""The one place utod imports TensorFlow and Keras: always the tf-keras 2.x API
(``tf_keras``), never Keras 3, independent of ``TF_USE_LEGACY_KERAS`` and import order.

TensorFlow's start-up chatter (oneDNN notices, "could not find cuda drivers", absl's
pre-init warning) is written by C++ straight to file descriptor 2, before
``TF_CPP_MIN_LOG_LEVEL`` takes effect. We capture fd 2 while importing and re-emit only
lines that are not such notices. ``UTOD_TF_VERBOSE=1`` shows everything.
"""

from __future__ import annotations

import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# TensorFlow's __init__ eagerly imports the optimizers of the Keras it maps ``tf.keras`` to:
# Keras 3 (~1.5-2.5 s of start-up on the 2-core machine, and never used here) unless told
# it is tf-keras, which utod imports anyway. An explicit user setting is kept.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

_NOISE = (
    "All log messages before absl::InitializeLog()",
    "oneDNN custom operations are on",
    "Could not find cuda drivers",
    "cuda_dnn",
    "cuda_fft",
    "cuda_blas",
    "TensorFlow binary is optimized",
    "computation_placer",
    "Unable to register cu",
    "failed call to cuInit",
)


def _import_quietly():
    if os.environ.get("UTOD_TF_VERBOSE"):
        import tensorflow as tf
        import tf_keras as keras

        return tf, keras
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except OSError:  # no real fd 2 (embedded interpreters)
        import tensorflow as tf
        import tf_keras as keras

        return tf, keras
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import tensorflow as tf
            import tf_keras as keras

            tf.config.list_physical_devices()  # device probing logs ("failed call to cuInit") land here too
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode("utf-8", "replace")
            for line in text.splitlines():
                if line.strip() and not any(n in line for n in _NOISE):
                    print(line, file=sys.stderr)
    return tf, keras


tf, keras = _import_quietly()
tf.get_logger().setLevel("ERROR")

__all__ = ["keras", "tf"]
