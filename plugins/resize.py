"""Built-in resize backends (registration only; the code is in utod_plugins.impl.resize).

The seed's three names are all OpenCV (docs/pipeline.md §2.1): ``opencv_inter_nearest`` (default) and
``keras_nearest`` are ``cv2.INTER_NEAREST``; ``keras_bilinear`` is ``cv2.INTER_LINEAR`` (not
TF's half-pixel bilinear, despite the name). ``tf_bilinear`` is the real
``tf.image.resize(bilinear, half_pixel_centers)``.
"""

from utod import hookimpl

_IMPL = "utod_plugins.impl.resize"


@hookimpl
def register_resize_backends(register):
    register("opencv_inter_nearest", f"{_IMPL}:OpenCVNearest",
             summary="cv2.resize INTER_NEAREST (default; matches ONNX nearest/asymmetric/floor)", params={})
    register("keras_nearest", f"{_IMPL}:OpenCVNearest",
             summary="seed name: the same cv2.resize INTER_NEAREST", params={})
    register("keras_bilinear", f"{_IMPL}:OpenCVLinear",
             summary="seed name: cv2.resize INTER_LINEAR (OpenCV linear, not TF bilinear)", params={})
    register("opencv_inter_linear", f"{_IMPL}:OpenCVLinear", summary="cv2.resize INTER_LINEAR", params={})
    register("opencv_inter_area", f"{_IMPL}:OpenCVArea",
             summary="cv2.resize INTER_AREA (pixel-area averaging; best for big downscales)", params={})
    for suffix, cls, text in (("y", "NearestY", "luma Y, 1 channel"),
                              ("y_bin", "NearestYBinary", "binarised luma (0/1), 1 channel"),
                              ("y_tri", "NearestYTernary", "ternarised luma (0/0.5/1), 1 channel"),
                              ("yuv422", "NearestYUV422", "YUYV 4:2:2, 2 channels")):
        register(f"opencv_inter_nearest_{suffix}", f"{_IMPL}:{cls}",
                 summary=f"INTER_NEAREST; camera-native input: {text} (UHD input mode)", params={})
    register("tf_bilinear", f"{_IMPL}:TFBilinear",
             summary="tf.image.resize bilinear, half-pixel centres, no antialias", params={})
