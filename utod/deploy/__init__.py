"""Deployment to microcontrollers: TFLite Micro checks (:mod:`utod.deploy.tflm`) and the
firmware bundle (:mod:`utod.deploy.bundle`). See docs/deploy.md."""
