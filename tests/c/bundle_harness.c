/* Host harness for the bundle's C post-process (tests/test_bundle.py): reads the raw output
 * tensors of one image from stdin (for each output: UTOD_OUTPUT_BITS/8 * elements bytes, in
 * interpreter order), runs utod_postprocess with the bundle's thresholds (or argv[1], argv[2]),
 * prints one detection per line: class score cx cy w h. */
#include <stdio.h>
#include <stdlib.h>

#include "utod_model_config.h"

int main(int argc, char **argv) {
  static int8_t buffers[UTOD_NUM_OUTPUTS][1 << 20];
  static utod_candidate_t scratch[UTOD_PRE_NMS_TOPK];
  static utod_detection_t dets[UTOD_MAX_DETECTIONS];
  utod_tensor_t outs[UTOD_NUM_OUTPUTS];
  float conf = argc > 1 ? (float)atof(argv[1]) : UTOD_CONF_THRESH;
  float iou = argc > 2 ? (float)atof(argv[2]) : UTOD_NMS_IOU;
  int i, n;
  for (i = 0; i < UTOD_NUM_OUTPUTS; i++) {
    size_t bytes = (size_t)utod_output_elements[i] * (UTOD_OUTPUT_BITS / 8);
    if (bytes > sizeof(buffers[i]) || fread(buffers[i], 1, bytes, stdin) != bytes) return 3;
    outs[i].data = buffers[i];
    outs[i].scale = utod_output_scale[i];
    outs[i].zero_point = utod_output_zero_point[i];
  }
  n = utod_postprocess(&utod_model, outs, conf, iou, scratch, UTOD_PRE_NMS_TOPK, dets, UTOD_MAX_DETECTIONS);
  for (i = 0; i < n; i++)
    printf("%d %.7f %.7f %.7f %.7f %.7f\n", dets[i].class_id, dets[i].score, dets[i].cx, dets[i].cy, dets[i].w,
           dets[i].h);
  return 0;
}
