"""Built-in dataset layouts (registration only; the readers are the modules of utod.data.formats).

Each reader is imported only when a dataset is opened, so ``utod list-plugins`` stays fast.
"""

from utod import hookimpl

_F = "utod_plugins.impl.dataset_formats"


@hookimpl
def register_dataset_formats(register):
    register("ultralytics", f"{_F}:UltralyticsLayout", params={},
             summary="Ultralytics / Roboflow data.yaml (train/val/test folders or lists, names)")
    register("cvat-yolo", f"{_F}:CvatLayout", params={},
             summary="CVAT 'YOLO 1.1' export: obj.data, obj.names, train.txt, obj_train_data/")
    register("voc", f"{_F}:VocLayout", params={},
             summary="Pascal VOC XML: Annotations/ + JPEGImages/ (+ ImageSets), or LabelImg x.xml beside x.jpg")
    register("coco", f"{_F}:CocoLayout", params={},
             summary="COCO instances JSON (one file, annotations/instances_*.json, Roboflow _annotations.coco.json)")
    register("ultralytics-tree", f"{_F}:UltralyticsTreeLayout", params={},
             summary="images/ + labels/ folders without a YAML")
    register("yolo", f"{_F}:YoloLayout", params={},
             summary="YOLO .txt beside each image (folder, recursive), an image list file, or one image")
