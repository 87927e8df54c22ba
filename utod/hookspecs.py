"""The hooks of utod: one per kind of interchangeable component.

Every hook has the same shape: utod calls it with a ``register`` callback and the plugin
calls ``register`` once per component it provides::

    from utod import hookimpl

    @hookimpl
    def register_iou_losses(register):
        register("diou", "my_pkg.losses:DIoU", summary="Distance-IoU", params={})

``register(name, factory, *, summary=None, params=None, aliases=())``

* ``name`` -- lower-case identifier the user types (``--iou-loss diou``). Augmentations use
  the aug.yaml op name instead (``HorizontalFlip``).
* ``factory`` -- a class or callable, or a ``"module:attribute"`` string that utod imports
  only when the component is used. Prefer the string: ``utod list-plugins`` must stay fast
  and must not import TensorFlow.
* ``summary`` -- one line for ``utod list-plugins`` (default: first line of the factory's
  docstring when the factory is an object).
* ``params`` -- ``{name: default}`` of the options the component accepts. The CLI
  (``--iou-loss-opt name=value``) and YAML configs are validated against it, and values are
  coerced to the default's type. When omitted and ``factory`` is an object, utod reads the
  keyword parameters that have defaults from its signature.

The object utod builds is ``factory(**options)`` (heads: ``factory(context, **options)``).
What that object must provide is stated in each hook's docstring below. Tensor conventions
used throughout (the same contracts as ``typing.Protocol`` classes: ``utod.sdk``; a
checker for them: ``utod.sdk.testing``):

* images: NHWC float32 in [0, 1], RGB.
* boxes: normalised ``(cx, cy, w, h)`` relative to the network input, float32.
* the loss sees predictions as ``[B, A, H, W, D]``: batch, anchor, grid row, grid column,
  per-anchor channels ``tx, ty, tw, th, obj, [quality], cls_0..cls_{C-1}``.
"""

from __future__ import annotations

import pluggy

from utod import PROJECT_NAME

hookspec = pluggy.HookspecMarker(PROJECT_NAME)


@hookspec
def register_assigners(register):
    """Register target assigners (``--assigner NAME``, options via ``--assigner-opt k=v``).

    The built object is called once per training step, inside ``tf.function``, on
    fixed-shape batched tensors (no Python loop over images or boxes)::

        assignment = assigner(
            pred_boxes,   # float32 [B, A, H, W, 4] decoded predictions, normalised cxcywh,
                          #   already under tf.stop_gradient
            cls_logits,   # float32 [B, A, H, W, C] raw class logits (C may be 0)
            obj_logits,   # float32 [B, A, H, W]    raw objectness logits
            gt_boxes,     # float32 [B, M, 4] ground truth, normalised cxcywh, zero padded
            gt_labels,    # int32   [B, M]    contiguous class index 0..C-1 (padding: -1)
            gt_mask,      # bool    [B, M]    True for real boxes
            anchors,      # float32 [A, 2]    effective anchors (w, h) = anchors * wh_scale
            num_classes,  # python int C
            has_quality,  # python bool: the head has an IoU-aware quality branch
        )

    It returns ``utod.components.Assignment(pos_mask, box_targets, cls_targets)``:
    ``pos_mask`` float32 [B, A, H, W] (1 = positive), ``box_targets`` float32
    [B, A, H, W, 4] (assigned GT box, normalised cxcywh; anything at negatives) and
    ``cls_targets`` float32 [B, A, H, W, C] in [0, 1] (zeros at negatives). Targets carry no
    gradient. Images (or whole batches) without boxes must work and give no positive.

    Example::

        @hookimpl
        def register_assigners(register):
            register("centre", "my_pkg.assign:CentreAssigner", params={"radius": 1})
    """


@hookspec
def register_iou_losses(register):
    """Register box-regression similarities (``--iou-loss NAME``).

    The built object maps two broadcast-compatible float32 tensors ``pred`` and
    ``target`` of shape ``[..., 4]`` (normalised cxcywh) to the similarity ``X`` of shape
    ``[...]``: 1 for identical boxes, lower is worse, may be negative (GIoU, CIoU). The box
    loss is ``mean(1 - X)`` over positives and the quality / objectness target is
    ``clip(stop_gradient(X), 0, 1)``. It must be differentiable w.r.t. ``pred`` and run
    inside ``tf.function``.

    Example::

        class L1Similarity:
            def __call__(self, pred, target):
                import tensorflow as tf
                return 1.0 - tf.reduce_sum(tf.abs(pred - target), axis=-1)

        @hookimpl
        def register_iou_losses(register):
            register("l1sim", L1Similarity)
    """


@hookspec
def register_cls_losses(register):
    """Register classification losses (``--cls-loss-type NAME``).

    The built object is called inside ``tf.function`` as
    ``loss = cls_loss(cls_logits, cls_targets, pos_mask)`` with ``cls_logits`` float32
    [B, A, H, W, C] raw logits, ``cls_targets`` float32 [B, A, H, W, C] in [0, 1] (zeros
    at negatives) and ``pos_mask`` float32 [B, A, H, W]. It returns a float32 scalar,
    already normalised (e.g. sum over positives / max(1, N_pos), or a dense mean). utod
    calls it only when C > 0 and uses 0 when the batch has no positive.

    Example::

        @hookimpl
        def register_cls_losses(register):
            register("focal", "my_pkg.losses:Focal", params={"gamma": 2.0, "alpha": 0.25})
    """


@hookspec
def register_heads(register):
    """Register detection heads (``--head NAME``, options via ``--head-opt k=v``).

    Built as ``factory(context, **options)`` where ``context`` is a
    ``utod.components.HeadContext`` (num_anchors, num_classes, in_channels, activation,
    use_batchnorm). It returns a tf-keras ``Layer`` that maps the backbone feature map
    float32 [B, h, w, in_channels] (NHWC) to the raw map
    float32 [B, h, w, A * (5 + Q + C)], anchor-major, per-anchor channel order
    ``tx, ty, tw, th, obj, [quality], cls_0..cls_{C-1}``. The layer must expose:

    * ``has_quality`` -- bool, Q = 1 when True;
    * ``wh_scale`` -- float32 [A, 2] multiplier of the anchors (a trainable weight
      initialised to ones, or a constant of ones);
    * ``default_score_mode`` -- the score used when the user sets none: ``obj_quality_cls``,
      ``quality_cls`` or ``obj_cls`` (the core never guesses it from the head's options);
    * ``get_config()`` returning its options so the checkpoint can rebuild it.

    The checkpoint records the head's name and options; loading a checkpoint whose head
    plugin is not installed is an error naming it.
    """


@hookspec
def register_resize_backends(register):
    """Register image resize backends (``--resize-mode NAME``).

    The built object is a callable ``resize(image, size)`` with ``image`` a uint8 numpy
    array [h, w, 3] RGB and ``size`` a ``(H, W)`` tuple, returning uint8 [H, W, 3]. The
    backend chosen for training is stored in the checkpoint and used again by predict,
    eval and export preprocessing, so training and deployment see the same pixels.
    Images are stretched (no letterbox); normalised boxes are unchanged by resizing.
    The data pipeline calls it from worker threads, several images at once: it must be
    thread-safe (no mutable state on the object) and must not modify its input.

    A backend may also declare a camera-native model input (utod.data.model_input):
    ``channels`` (int, default 3), ``input_mode`` (str, default "rgb") and
    ``to_input(image)`` mapping the augmented float32 RGB [H, W, 3] in [0, 1] to float32
    [H, W, channels]; training, eval, predict and export then feed the model that input
    (the built-in ``opencv_inter_nearest_y`` / ``_y_bin`` / ``_y_tri`` / ``_yuv422``).
    """


@hookspec
def register_augmentations(register):
    """Register augmentation transforms, selected by name in the aug.yaml ``data_augment:``
    mapping (``HorizontalFlip: {prob: 0.5}``). Names keep the seed's CamelCase op names.

    Built as ``factory(**params)``; ``prob`` is the apply-probability (declare it in
    ``params`` with its default). The object is called per sample, outside TensorFlow, as
    ``sample = transform(sample, rng, pool)``:

    * ``sample`` -- ``utod.components.Sample(image, boxes, labels)``: ``image`` float32
      numpy [H, W, 3] in [0, 1] RGB at the training size, ``boxes`` float32 [N, 4]
      normalised cxcywh, ``labels`` int32 [N] raw class ids. Return a new Sample (N may
      change); keep boxes consistent with the pixels.
    * ``rng`` -- ``numpy.random.Generator``; draw every random number from it.
    * ``pool`` -- for multi-image transforms, an object whose ``draw(rng)`` returns another
      un-augmented Sample of the same size; ``None`` when no partner source exists.

    The pipeline calls one transform object from several worker threads at once: it must be
    thread-safe (``self`` read-only after ``__init__``, random numbers only from ``rng``) and
    must not write into the input arrays (they may be shared with the image cache).

    Class attributes the pipeline reads (all optional):

    * ``samples_needed`` (int, default 1) -- Mosaic needs 4, MixUp 2;
    * ``scalar_params`` (tuple, default ``("prob",)``) -- which parameters a bare number
      in the YAML sets (``RemoveOutliers: 0.002`` sets ``min_area``);
    * ``always_apply`` (bool, default False) -- ignore ``prob`` and always run.
    """


@hookspec
def register_dataset_formats(register):
    """Register dataset layouts: readers of a labelling tool's export (``--data X`` detects
    the layout; ``--data-format NAME`` picks one). See docs/datasets.md.

    Built as ``factory()``: a ``utod.data.formats.base.DatasetLayout`` with

    * ``name``, ``title``, ``markers`` (what detection looks for; shown when nothing matches);
    * ``priority`` (int, lower is tried first; the built-in fallback ``yolo`` is 1000);
    * ``detect(path: pathlib.Path) -> bool`` -- cheap: is this file or folder in the layout?
    * ``open(path) -> DatasetSource`` -- reads the description and class names (``names``,
      ``num_classes``); the source's ``read(rules)`` returns a ``ReadResult`` whose
      ``splits`` map ``train`` / ``val`` / ``test`` (or ``all``) to ``DatasetItem`` lists
      (boxes normalised ``cx, cy, w, h`` float32 ``[N, 4]``, class ids int32 ``[N]``) and
      whose issue log names the file and line (or JSON path) of every problem.
    """
