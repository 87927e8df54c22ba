/* utod_postprocess.c - see utod_postprocess.h. C99, libm only (expf, logf, powf). */
#include "utod_postprocess.h"

#include <math.h>

static float utod_value(const utod_model_t *m, const utod_tensor_t *outs, int group, int row, int col,
                        int anchor, int j) {
  const utod_group_t *g = &m->groups[group];
  const utod_tensor_t *t = &outs[g->output_index];
  long at = ((long)row * m->grid_w + col) * g->channels + (long)anchor * g->anchor_stride + g->offset + j;
  int32_t q = m->bits == 16 ? (int32_t)((const int16_t *)t->data)[at] : (int32_t)((const int8_t *)t->data)[at];
  return t->scale * (float)(q - t->zero_point);
}

static float utod_sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

static float utod_softplus(float x) { return x > 20.0f ? x : log1pf(expf(x)); }

static float utod_clip01(float v) { return v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v); }

/* a ranks before b: higher score, then lower index (the order of TensorFlow's top_k). */
static int utod_before(const utod_candidate_t *a, const utod_candidate_t *b) {
  return a->score > b->score || (a->score == b->score && a->index < b->index);
}

/* Insert into the sorted list `c` of `*n` candidates (at most `cap`). */
static void utod_insert(utod_candidate_t *c, int *n, int cap, const utod_candidate_t *x) {
  int i;
  if (*n == cap) {
    if (!utod_before(x, &c[cap - 1])) return;
    (*n)--;
  }
  i = *n;
  while (i > 0 && utod_before(x, &c[i - 1])) {
    c[i] = c[i - 1];
    i--;
  }
  c[i] = *x;
  (*n)++;
}

static float utod_iou(const utod_candidate_t *a, const utod_candidate_t *b) {
  float iw = fminf(a->x2, b->x2) - fmaxf(a->x1, b->x1);
  float ih = fminf(a->y2, b->y2) - fmaxf(a->y1, b->y1);
  float inter, uni;
  if (iw <= 0.0f || ih <= 0.0f) return 0.0f;
  inter = iw * ih;
  uni = (a->x2 - a->x1) * (a->y2 - a->y1) + (b->x2 - b->x1) * (b->y2 - b->y1) - inter;
  return inter / (uni > 1e-12f ? uni : 1e-12f);
}

int utod_postprocess(const utod_model_t *m, const utod_tensor_t *outs, float conf_thresh, float iou_thresh,
                     utod_candidate_t *scratch, int capacity, utod_detection_t *out, int max_out) {
  int n = 0, kept = 0, a, r, c, k, i, j;
  const int ncls = m->num_classes > 0 ? m->num_classes : 1;
  const int has_q = m->groups[UTOD_GROUP_QUALITY].output_index >= 0;
  const int has_cls = m->num_classes > 0 && m->groups[UTOD_GROUP_CLS].output_index >= 0;
  if (capacity <= 0 || max_out <= 0) return 0;
  for (a = 0; a < m->num_anchors; a++) {
    for (r = 0; r < m->grid_h; r++) {
      for (c = 0; c < m->grid_w; c++) {
        float base, cx, cy, bw, bh;
        utod_candidate_t cand;
        if (!has_q || m->score_mode == UTOD_SCORE_OBJ_CLS) {
          base = utod_sigmoid(utod_value(m, outs, UTOD_GROUP_OBJ, r, c, a, 0));
        } else {
          float q = utod_sigmoid(utod_value(m, outs, UTOD_GROUP_QUALITY, r, c, a, 0));
          if (m->quality_power != 1.0f) q = powf(q, m->quality_power);
          base = m->score_mode == UTOD_SCORE_QUALITY_CLS
                     ? q : utod_sigmoid(utod_value(m, outs, UTOD_GROUP_OBJ, r, c, a, 0)) * q;
        }
        if (base < conf_thresh) continue; /* every class score is <= base */
        cx = (utod_sigmoid(utod_value(m, outs, UTOD_GROUP_BOX, r, c, a, 0)) + (float)c) / (float)m->grid_w;
        cy = (utod_sigmoid(utod_value(m, outs, UTOD_GROUP_BOX, r, c, a, 1)) + (float)r) / (float)m->grid_h;
        bw = m->anchors_wh[2 * a] * utod_softplus(utod_value(m, outs, UTOD_GROUP_BOX, r, c, a, 2));
        bh = m->anchors_wh[2 * a + 1] * utod_softplus(utod_value(m, outs, UTOD_GROUP_BOX, r, c, a, 3));
        cand.x1 = utod_clip01(cx - bw / 2.0f);
        cand.y1 = utod_clip01(cy - bh / 2.0f);
        cand.x2 = utod_clip01(cx + bw / 2.0f);
        cand.y2 = utod_clip01(cy + bh / 2.0f);
        for (k = 0; k < ncls; k++) {
          cand.score = has_cls ? base * utod_sigmoid(utod_value(m, outs, UTOD_GROUP_CLS, r, c, a, k)) : base;
          if (cand.score < conf_thresh) continue;
          cand.index = (int32_t)(((a * m->grid_h + r) * m->grid_w + c) * ncls + k);
          utod_insert(scratch, &n, capacity, &cand);
        }
      }
    }
  }
  /* greedy class-aware NMS over the score-sorted candidates; kept ones move to the front */
  for (i = 0; i < n && kept < max_out; i++) {
    int suppressed = 0;
    int cls_i = scratch[i].index % ncls;
    for (j = 0; j < kept; j++) {
      if (scratch[j].index % ncls == cls_i && utod_iou(&scratch[j], &scratch[i]) > iou_thresh) {
        suppressed = 1;
        break;
      }
    }
    if (suppressed) continue;
    scratch[kept] = scratch[i];
    out[kept].score = scratch[i].score;
    out[kept].class_id = cls_i;
    out[kept].cx = (scratch[i].x1 + scratch[i].x2) / 2.0f;
    out[kept].cy = (scratch[i].y1 + scratch[i].y2) / 2.0f;
    out[kept].w = scratch[i].x2 - scratch[i].x1;
    out[kept].h = scratch[i].y2 - scratch[i].y1;
    kept++;
  }
  return kept;
}
