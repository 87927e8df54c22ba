"""The UltraTinyOD detector: backbone + a head plugin, plus its anchors as model state."""

from __future__ import annotations

from typing import Any

from utod._keras import keras, tf
from utod.components import HeadContext
from utod.model.backbone import Backbone
from utod.model.config import ModelConfig


class UltraTinyOD(keras.Model):
    """images float32 [B, H, W, C_in] in [0, 1] (C_in = config.in_channels, 3 for RGB; H, W divisible
    by the stride) ->
    raw float32 [B, H/s, W/s, A * (5 + Q + C)] (layout of utod.boxes).

    ``anchors`` is a non-trainable float32 [A, 2] variable (normalised w, h) saved with the
    weights; ``wh_scale`` comes from the head. Build it with :func:`build_model`.
    """

    def __init__(self, config: ModelConfig, head: keras.layers.Layer, head_info: dict[str, Any] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(name=kwargs.pop("name", "ultratinyod"), **kwargs)
        self.config = config
        self.head_info = dict(head_info or {})
        self.backbone = Backbone(config.cnn_width, config.stride, config.residual, config.activation,
                                 config.use_batchnorm, conv=config.conv, sppf_scale=config.sppf_scale,
                                 name="backbone")
        self.head = head
        for attr in ("has_quality", "wh_scale", "default_score_mode"):
            if not hasattr(head, attr):
                raise TypeError(f"head '{config.head}' ({type(head).__name__}) does not provide '{attr}'")
        self.anchors = self.add_weight(
            "anchors", shape=(config.num_anchors, 2), dtype=tf.float32, trainable=False,
            initializer=keras.initializers.Constant(config.anchors),
        )

    # ------------------------------------------------------------------ properties
    @property
    def num_anchors(self) -> int:
        return self.config.num_anchors

    @property
    def num_classes(self) -> int:
        """Class channels of the raw map (0 for a ``disable_cls`` model; its one class is id 0)."""
        return self.config.head_classes

    @property
    def has_quality(self) -> bool:
        return bool(self.head.has_quality)

    @property
    def wh_scale(self):
        """float32 [A, 2] (the head's; trainable for the improved head)."""
        return self.head.wh_scale

    @property
    def channels_per_anchor(self) -> int:
        return 5 + int(self.has_quality) + self.num_classes

    def effective_anchors(self) -> tf.Tensor:
        """anchors * wh_scale, float32 [A, 2] normalised (w, h)."""
        return tf.convert_to_tensor(self.anchors) * tf.convert_to_tensor(self.wh_scale)

    # ------------------------------------------------------------------ forward
    def call(self, images, training=None):
        return self.call_with_features(images, training=training)[0]

    def call_with_features(self, images, training=None):
        """-> (raw [B, Hg, Wg, A*D], features [B, Hg, Wg, 4W]) (features feed distillation)."""
        images = tf.cast(images, tf.float32)
        features = self.backbone(images, training=training)
        raw = self.head(features, training=training)
        return raw, features

    def get_config(self) -> dict[str, Any]:
        return {"model_config": self.config.to_dict(), "head_info": self.head_info}


def head_context(cfg: ModelConfig) -> HeadContext:
    return HeadContext(num_anchors=cfg.num_anchors, num_classes=cfg.head_classes, in_channels=4 * cfg.cnn_width,
                       activation=cfg.activation, use_batchnorm=cfg.use_batchnorm)


def build_model(cfg: ModelConfig, registry=None, *, head_ref: str | None = None) -> UltraTinyOD:
    """Build (and create the variables of) an UltraTinyOD for ``cfg``; the head comes from
    ``registry.create("head", cfg.head, cfg.head_options, HeadContext(...))``. ``head_ref``
    (e.g. ``"provider:name"``) picks the head in the registry when the name alone is ambiguous."""
    if registry is None:
        from utod.registry import get_registry

        registry = get_registry()
    ref = head_ref or cfg.head
    comp = registry.get("head", ref)
    head = registry.create("head", ref, cfg.head_options, head_context(cfg))
    info = {"name": comp.name, "provider": comp.provider, "version": comp.version, "plugin": comp.plugin}
    model = UltraTinyOD(cfg, head, head_info=info)
    h, w = cfg.img_size
    model(tf.zeros([1, h, w, cfg.in_channels], tf.float32), training=False)
    return model
