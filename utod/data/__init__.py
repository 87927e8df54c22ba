"""The data pipeline: from a folder of images to fixed-shape batches (no TensorFlow import here).

Modules, in data-flow order:

* ``discovery`` -- find images (folder searched recursively and sorted, or a list file);
* ``labels``    -- read YOLO label files (boxes and segmentation polygons), report bad lines;
* ``dataset``   -- ``scan_dataset`` -> ``DatasetItem`` list + ``DatasetSummary``;
* ``classes``   -- ``resolve_classes`` (``--classes`` / ``--num-classes`` / ``--names``);
* ``split``     -- deterministic train/val split, ``write_split``;
* ``images``    -- header sniffing and decoding to uint8 RGB;
* ``cache``     -- decode-once, resized uint8 image cache in a disk-backed memmap;
* ``augment``   -- aug.yaml loading (``load_aug_config``) and the ``Augmenter``;
* ``pipeline``  -- ``PipelineConfig`` and ``DetectionData`` (tf.data batches; imports TF lazily);
* ``synthetic`` -- the built-in default dataset (``ensure_default_dataset``);
* ``boxes_np``  -- numpy box helpers shared with the augmentation plugins.
"""
