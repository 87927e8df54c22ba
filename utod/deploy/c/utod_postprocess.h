/* utod_postprocess.h - portable C99 decode + score + class-aware NMS for utod detectors.
 *
 * No heap, no globals written: the caller owns every buffer. Works on the raw int8 (or
 * int16) output tensors of a utod TFLite model exactly as TFLite Micro returns them.
 * Everything model-specific (grid, anchors, groups, quantisation, score mode) comes from
 * a utod_model_t, which the exporter writes into utod_model_config.h.
 *
 * Boxes are normalised to the network input: (cx, cy, w, h) in [0, 1], clipped.
 */
#ifndef UTOD_POSTPROCESS_H
#define UTOD_POSTPROCESS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Score modes (utod's score_mode). Without a quality branch every mode is obj * cls. */
#define UTOD_SCORE_OBJ_QUALITY_CLS 0 /* sigmoid(obj) * sigmoid(q)^P * sigmoid(cls) */
#define UTOD_SCORE_QUALITY_CLS 1     /* sigmoid(q)^P * sigmoid(cls) */
#define UTOD_SCORE_OBJ_CLS 2         /* sigmoid(obj) * sigmoid(cls) */

/* Groups of the raw head, per anchor: box (tx,ty,tw,th), obj, quality, cls (C values). */
#define UTOD_GROUP_BOX 0
#define UTOD_GROUP_OBJ 1
#define UTOD_GROUP_QUALITY 2
#define UTOD_GROUP_CLS 3
#define UTOD_NUM_GROUPS 4

/* Where one group lives: output tensor index, the tensor's channels (last NHWC dim), the
 * stride between anchors inside a cell and the group's offset in an anchor's block.
 * Concatenated export: every group in tensor 0 with anchor_stride = 5+Q+C and offsets
 * 0, 4, 5, 5+Q. Split export: each group its own tensor, anchor_stride = its width, offset 0.
 * output_index < 0: the model has no such group (no quality branch, or class-less). */
typedef struct {
  int output_index;
  int channels;
  int anchor_stride;
  int offset;
} utod_group_t;

/* One quantised output tensor as the firmware reads it (interpreter.output(i)). */
typedef struct {
  const void *data;   /* int8_t* (bits 8) or int16_t* (bits 16), NHWC [1, Hg, Wg, channels] */
  float scale;        /* real = scale * (q - zero_point) */
  int32_t zero_point;
} utod_tensor_t;

typedef struct {
  int grid_h, grid_w;        /* output grid (input size / stride) */
  int num_anchors;
  int num_classes;           /* 0: class-less head (one score per box, class id 0) */
  int bits;                  /* 8 or 16: the output tensors' integer type */
  int score_mode;            /* UTOD_SCORE_* */
  float quality_power;       /* P */
  const float *anchors_wh;   /* [num_anchors * 2]: anchor (w, h) * wh_scale, normalised */
  utod_group_t groups[UTOD_NUM_GROUPS];
} utod_model_t;

typedef struct {
  float score;
  int class_id;              /* contiguous class index (class names in utod_model_config.h) */
  float cx, cy, w, h;        /* normalised, clipped to the image */
} utod_detection_t;

/* Scratch for one call: at most `capacity` candidates are kept (the best by score) before
 * NMS; utod uses 300 (UTOD_PRE_NMS_TOPK). */
typedef struct {
  float score;
  int32_t index;             /* (anchor, row, col) * max(C,1) + class: the tie-break order */
  float x1, y1, x2, y2;
} utod_candidate_t;

/* Decode `outputs` (indexed like the model's output tensors), keep candidates with
 * score >= conf_thresh (the best `capacity` of them), run greedy class-aware NMS (a box is
 * dropped when an earlier kept box of the same class overlaps it with IoU > iou_thresh) and
 * write at most `max_out` detections, best first. Returns the number written. */
int utod_postprocess(const utod_model_t *model, const utod_tensor_t *outputs, float conf_thresh,
                     float iou_thresh, utod_candidate_t *scratch, int capacity,
                     utod_detection_t *out, int max_out);

#ifdef __cplusplus
}
#endif

#endif /* UTOD_POSTPROCESS_H */
