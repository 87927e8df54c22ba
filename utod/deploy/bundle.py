"""The firmware bundle: a folder a firmware engineer drops into a TFLite Micro project.

``write_bundle(tflite_path, out_dir)`` writes (all from the quantised file, int8 or 16x8, and
its utod metadata):

* ``utod_model_data.h`` / ``utod_model_data.cc``: the flatbuffer as
  ``alignas(16) const unsigned char g_utod_model_data[]`` (TFLM uses it in place, from flash).
* ``utod_op_resolver.h``: ``tflite::MicroMutableOpResolver<N>`` with exactly the ops used.
* ``utod_model_config.h`` (C99 and C++): input size and quantisation as it really is, the
  arena size (measured by the TFLM runtime, plus the stated margin), the resize backend the
  model was trained with, anchors x wh_scale, class names, score mode, thresholds, the
  output tensors' scales and zero points, and a ready ``utod_model_t`` for the post-process.
* ``utod_postprocess.h`` / ``utod_postprocess.c``: portable C99 decode, score, class-aware
  NMS, no heap (copied from utod/deploy/c).
* ``utod_example.cc``: interpreter set-up, input fill, invoke, post-process, in one function.
* ``model.tflite`` and ``README.md``.

The folder is written next to its final place and renamed into it only when complete.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from utod.errors import ConfigError
from utod.infer.modelinfo import ModelInfo

C_SOURCES = Path(__file__).with_name("c")
PRE_NMS_TOPK = 300  # utod.model.postprocess.PRE_NMS_TOPK
DEFAULT_ARENA_MARGIN = 0.10
ARENA_MARGIN_MIN_BYTES = 1024
SCORE_MODE_MACROS = {"obj_quality_cls": "UTOD_SCORE_OBJ_QUALITY_CLS", "quality_cls": "UTOD_SCORE_QUALITY_CLS",
                     "obj_cls": "UTOD_SCORE_OBJ_CLS",
                     # class-less heads (--disable-cls): the same base score, one class
                     "obj_quality": "UTOD_SCORE_OBJ_QUALITY_CLS", "quality": "UTOD_SCORE_QUALITY_CLS",
                     "obj": "UTOD_SCORE_OBJ_CLS"}
GROUP_MACROS = {"box": "UTOD_GROUP_BOX", "obj": "UTOD_GROUP_OBJ", "quality": "UTOD_GROUP_QUALITY",
                "cls": "UTOD_GROUP_CLS"}


@dataclass
class BundleSummary:
    folder: str
    files: list[str]
    arena_measured: int
    arena_size: int
    ops: list[str]

    def format(self) -> str:
        return (f"firmware bundle {self.folder}: {', '.join(self.files)}\n"
                f"  tensor arena {self.arena_size:,} bytes = measured {self.arena_measured:,} + margin; "
                f"resolver MicroMutableOpResolver<{len(self.ops)}>: {', '.join(self.ops)}")


def arena_with_margin(measured: int, margin: float) -> int:
    """measured + max(margin * measured, 1 KiB) + 16 B alignment slack, rounded up to 16."""
    total = measured + max(int(math.ceil(measured * margin)), ARENA_MARGIN_MIN_BYTES) + 16
    return (total + 15) // 16 * 16


def group_layout(info: ModelInfo, outputs: list[dict[str, Any]]) -> dict[str, tuple[int, int, int, int]]:
    """group -> (output index, tensor channels, anchor stride, offset) for the C post-process."""
    from utod.deploy.groups import group_widths

    widths = group_widths(info.has_quality, info.head_classes)
    if info.raw_groups:
        return {name: (info.raw_groups.index(name), outputs[info.raw_groups.index(name)]["shape"][-1], k, 0)
                for name, k in widths.items()}
    d = sum(widths.values())
    layout, offset = {}, 0
    for name, k in widths.items():
        layout[name] = (0, outputs[0]["shape"][-1], d, offset)
        offset += k
    return layout


def _channels_text(info: ModelInfo) -> str:
    mode = getattr(info, "input_mode", "rgb")
    if mode == "rgb":
        return "RGB order"
    return f"input mode {mode} ({getattr(info, 'in_channels', 3)} channels, converted after the resize as in training)"


def _c_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=True)  # a valid C string literal for printable text


def _c_float(v: float) -> str:
    """A C float literal (``1.0f``, ``0.00392156886f``)."""
    if not math.isfinite(v):
        return "0.0f"
    text = f"{float(v):.9g}"
    if not any(ch in text for ch in ".e"):
        text += ".0"
    return text + "f"


def input_mapping(inp: dict[str, Any]) -> tuple[str, bool]:
    """How a camera pixel (uint8, RGB, after the model's resize) becomes the input tensor's
    value, in words, and whether it is exactly ``pixel - 128``."""
    scale, zp, dtype = inp.get("scale"), inp.get("zero_point"), inp["dtype"]
    if scale is None:
        return "float32 input: value = pixel / 255.0f", False
    exact = dtype == "int8" and zp == -128 and abs(scale * 255.0 - 1.0) < 1e-6
    if exact:
        return "int8 input = (int8_t)(uint8_pixel - 128)  (scale 1/255, zero point -128, exact)", True
    return (f"{dtype} input = round(uint8_pixel / 255 / {scale:.9g}) + ({zp}), clamped to the type's range",
            False)


def config_header(info: ModelInfo, report: dict[str, Any], arena_size: int, margin: float) -> str:
    """The text of utod_model_config.h."""
    inp = report["inputs"][0]
    outs = report["outputs"]
    _, h, w, c = inp["shape"]
    mapping, exact = input_mapping(inp)
    layout = group_layout(info, outs)
    gh, gw = outs[0]["shape"][1], outs[0]["shape"][2]
    bits = 16 if outs[0]["dtype"] == "int16" else 8
    eff = info.effective_anchors().reshape(-1).tolist()
    names = info.class_names or []
    groups = []
    for name in ("box", "obj", "quality", "cls"):
        if name in layout:
            idx, ch, stride, off = layout[name]
            groups.append(f"    /* {name:<7} */ {{{idx}, {ch}, {stride}, {off}}},")
        else:
            groups.append(f"    /* {name:<7} */ {{-1, 0, 0, 0}}, /* not in this model */")
    out_lines = []
    for i, o in enumerate(outs):
        out_lines.append(f" * output {i}: {o.get('group', 'raw')} {o['shape']} {o['dtype']} scale {o['scale']:.9g} "
                         f"zero point {o['zero_point']}")
    lines = [
        "/* utod_model_config.h - generated by `utod export --format tflm`; do not edit.",
        " * Everything the firmware needs besides the model bytes (C99 and C++). */",
        "#ifndef UTOD_MODEL_CONFIG_H",
        "#define UTOD_MODEL_CONFIG_H",
        "",
        '#include "utod_postprocess.h"',
        "",
        f"/* Input: NHWC [1, H, W, C], {_channels_text(info)}. Resize the camera image to W x H with the backend the",
        f" * model was trained with ({info.resize_mode}; stretch, no letterbox), then:",
        f" *   {mapping} */",
        f"#define UTOD_INPUT_HEIGHT {h}",
        f"#define UTOD_INPUT_WIDTH {w}",
        f"#define UTOD_INPUT_CHANNELS {c}",
        f"#define UTOD_INPUT_SCALE {_c_float(inp['scale'] or 0.0)}",
        f"#define UTOD_INPUT_ZERO_POINT ({inp['zero_point'] if inp['zero_point'] is not None else 0})",
        f"#define UTOD_INPUT_IS_PIXEL_MINUS_128 {1 if exact else 0}",
        f"#define UTOD_INPUT_BITS {16 if inp['dtype'] == 'int16' else 8} /* int8 or int16 (16x8 model) */",
        f"#define UTOD_RESIZE_BACKEND {_c_string(info.resize_mode)}",
        f"#define UTOD_INPUT_MODE {_c_string(getattr(info, 'input_mode', 'rgb'))}",
        "",
        f"/* Tensor arena: {report['arena_bytes']:,} bytes measured by the TFLite Micro runtime "
        f"{report['tflm_version']} on a 64-bit host,",
        f" * plus a margin of max({margin:.0%}, {ARENA_MARGIN_MIN_BYTES} B) and 16 B alignment slack. 32-bit targets",
        " * usually need less, optimised kernels (CMSIS-NN, ESP-NN) may need scratch: log",
        " * interpreter.arena_used_bytes() once at boot. Declare it as",
        " *   alignas(16) static uint8_t tensor_arena[UTOD_TENSOR_ARENA_SIZE]; */",
        f"#define UTOD_ARENA_MEASURED_BYTES {report['arena_bytes']}",
        f"#define UTOD_TENSOR_ARENA_SIZE {arena_size}",
        f"#define UTOD_MODEL_FLASH_BYTES {report['flash_bytes']}",
        "",
        "/* Outputs, in interpreter.output(i) order:",
        *out_lines,
        " */",
        f"#define UTOD_NUM_OUTPUTS {len(outs)}",
        "static const float utod_output_scale[UTOD_NUM_OUTPUTS] = {"
        + ", ".join(_c_float(o["scale"]) for o in outs) + "};",
        "static const int32_t utod_output_zero_point[UTOD_NUM_OUTPUTS] = {"
        + ", ".join(str(o["zero_point"]) for o in outs) + "};",
        "static const int32_t utod_output_elements[UTOD_NUM_OUTPUTS] = {"
        + ", ".join(str(int(np.prod(o["shape"]))) for o in outs) + "};",
        f"#define UTOD_OUTPUT_BITS {bits}",
        f"#define UTOD_GRID_HEIGHT {gh}",
        f"#define UTOD_GRID_WIDTH {gw}",
        f"#define UTOD_NUM_ANCHORS {info.num_anchors}",
        f"#define UTOD_NUM_CLASSES {info.head_classes} /* class channels of the head; 0: class-less */",
        "",
        "/* Decode settings of the checkpoint (utod predict uses the same). */",
        f"#define UTOD_SCORE_MODE {SCORE_MODE_MACROS[info.score_mode]} /* {info.score_mode} */",
        f"#define UTOD_QUALITY_POWER {_c_float(info.quality_power)}",
        f"#define UTOD_CONF_THRESH {_c_float(info.conf_thresh)}",
        f"#define UTOD_NMS_IOU {_c_float(info.nms_iou)}",
        f"#define UTOD_MAX_DETECTIONS {info.max_detections}",
        f"#define UTOD_PRE_NMS_TOPK {PRE_NMS_TOPK}",
        "",
        "/* Effective anchors (anchor w, h times the trained wh_scale), normalised, per anchor. */",
        "static const float utod_anchors_wh[UTOD_NUM_ANCHORS * 2] = {",
        "    " + ", ".join(_c_float(v) for v in eff) + "};",
        "",
        f"/* Class names by contiguous class id{' (class-less head: every box is class 0)' if not names else ''}. */",
        f"#define UTOD_NUM_CLASS_NAMES {max(len(names), 1)}",
        "static const char *const utod_class_names[UTOD_NUM_CLASS_NAMES] = {",
        "    " + (", ".join(_c_string(n) for n in names) if names else '"object"') + "};",
        "",
        "static const utod_model_t utod_model = {",
        "    UTOD_GRID_HEIGHT, UTOD_GRID_WIDTH, UTOD_NUM_ANCHORS, UTOD_NUM_CLASSES, UTOD_OUTPUT_BITS,",
        "    UTOD_SCORE_MODE, UTOD_QUALITY_POWER, utod_anchors_wh,",
        "    { /* output index, channels, anchor stride, offset */",
        *groups,
        "    }};",
        "",
        "#endif /* UTOD_MODEL_CONFIG_H */",
        "",
    ]
    return "\n".join(lines)


def resolver_header(ops: list[str]) -> str:
    from utod.deploy.tflm import resolver_method

    calls = [f"  if (resolver.{resolver_method(op)}() != kTfLiteOk) return kTfLiteError;  // {op}" for op in ops]
    return "\n".join([
        "// utod_op_resolver.h - generated by `utod export --format tflm`: exactly the ops the model uses.",
        "#ifndef UTOD_OP_RESOLVER_H",
        "#define UTOD_OP_RESOLVER_H",
        "",
        '#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"',
        "",
        f"constexpr int kUtodNumOps = {len(ops)};",
        "using UtodOpResolver = tflite::MicroMutableOpResolver<kUtodNumOps>;",
        "",
        "// Register every op of the model once; returns kTfLiteError if one fails.",
        "inline TfLiteStatus UtodRegisterOps(UtodOpResolver& resolver) {",
        *calls,
        "  return kTfLiteOk;",
        "}",
        "",
        "#endif  // UTOD_OP_RESOLVER_H",
        "",
    ])


def model_data_files(content: bytes) -> tuple[str, str]:
    """(utod_model_data.h, utod_model_data.cc) texts: an aligned const C array."""
    header = "\n".join([
        "// utod_model_data.h - generated by `utod export --format tflm`.",
        "#ifndef UTOD_MODEL_DATA_H",
        "#define UTOD_MODEL_DATA_H",
        "",
        "extern const unsigned char g_utod_model_data[];",
        f"constexpr unsigned int g_utod_model_data_size = {len(content)};",
        "",
        "#endif  // UTOD_MODEL_DATA_H",
        "",
    ])
    rows = []
    for start in range(0, len(content), 12):
        rows.append("  " + ", ".join(f"0x{b:02x}" for b in content[start:start + 12]) + ",")
    source = "\n".join([
        "// utod_model_data.cc - generated by `utod export --format tflm`: the quantised model, used in place",
        "// by TFLite Micro (keep it const: it stays in flash; 16-byte aligned as TFLM expects).",
        '#include "utod_model_data.h"',
        "",
        "alignas(16) const unsigned char g_utod_model_data[] = {",
        *rows,
        "};",
        "",
    ])
    return header, source


EXAMPLE = r"""// utod_example.cc - generated by `utod export --format tflm`: how the firmware runs the model.
// Build with TFLite Micro (C++17) and utod_postprocess.c. Camera capture is yours.
#include <math.h>
#include <stdint.h>

#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/schema/schema_generated.h"
#include "utod_model_config.h"
#include "utod_model_data.h"
#include "utod_op_resolver.h"

alignas(16) static uint8_t tensor_arena[UTOD_TENSOR_ARENA_SIZE];

// rgb: UTOD_INPUT_HEIGHT x UTOD_INPUT_WIDTH x 3 uint8, already resized like the training
// backend (UTOD_RESIZE_BACKEND). Returns the number of detections written to `dets`.
int utod_detect(const uint8_t* rgb, utod_detection_t* dets, int max_dets) {
  static const tflite::Model* model = tflite::GetModel(g_utod_model_data);
  static UtodOpResolver resolver;
  static tflite::MicroInterpreter* interpreter = nullptr;
  static utod_candidate_t scratch[UTOD_PRE_NMS_TOPK];
  if (interpreter == nullptr) {
    if (model->version() != TFLITE_SCHEMA_VERSION || UtodRegisterOps(resolver) != kTfLiteOk) return -1;
    static tflite::MicroInterpreter instance(model, resolver, tensor_arena, UTOD_TENSOR_ARENA_SIZE);
    if (instance.AllocateTensors() != kTfLiteOk) return -1;
    interpreter = &instance;  // log interpreter->arena_used_bytes() once to tune the arena
  }
  TfLiteTensor* input = interpreter->input(0);
  const int n = UTOD_INPUT_HEIGHT * UTOD_INPUT_WIDTH * UTOD_INPUT_CHANNELS;
  for (int i = 0; i < n; i++) {
#if UTOD_INPUT_IS_PIXEL_MINUS_128
    input->data.int8[i] = (int8_t)((int)rgb[i] - 128);
#elif UTOD_INPUT_BITS == 16
    long q = lrintf(rgb[i] / 255.0f / UTOD_INPUT_SCALE) + UTOD_INPUT_ZERO_POINT;
    input->data.i16[i] = (int16_t)(q < -32768 ? -32768 : (q > 32767 ? 32767 : q));
#else
    int q = (int)lrintf(rgb[i] / 255.0f / UTOD_INPUT_SCALE) + UTOD_INPUT_ZERO_POINT;
    input->data.int8[i] = (int8_t)(q < -128 ? -128 : (q > 127 ? 127 : q));
#endif
  }
  if (interpreter->Invoke() != kTfLiteOk) return -1;
  utod_tensor_t outs[UTOD_NUM_OUTPUTS];
  for (int i = 0; i < UTOD_NUM_OUTPUTS; i++) {
    TfLiteTensor* t = interpreter->output(i);
    outs[i].data = t->data.raw;
    outs[i].scale = t->params.scale;
    outs[i].zero_point = t->params.zero_point;
  }
  return utod_postprocess(&utod_model, outs, UTOD_CONF_THRESH, UTOD_NMS_IOU, scratch, UTOD_PRE_NMS_TOPK,
                          dets, max_dets);
}
"""


def readme(info: ModelInfo, report: dict[str, Any], arena_size: int, margin: float) -> str:
    inp = report["inputs"][0]
    mapping, _ = input_mapping(inp)
    h, w = info.img_size
    outs = "\n".join(f"| {i} | {o.get('group', 'raw')} | {o['shape']} | {o['dtype']} | {o['scale']:.6g} | "
                     f"{o['zero_point']} |" for i, o in enumerate(report["outputs"]))
    return f"""# utod firmware bundle

Generated by `utod export --format tflm` (utod {info.extra.get('utod_version', '')}). Classes:
{', '.join(info.class_names) or '(class-less)'}. Input {w}x{h} RGB, resize backend `{info.resize_mode}`.

| file | what |
|---|---|
| `utod_model_data.cc/.h` | the quantised model, `alignas(16) const` C array ({report['flash_bytes']:,} bytes of flash) |
| `utod_op_resolver.h` | `MicroMutableOpResolver<{len(report['ops'])}>` with exactly the ops used: {', '.join(report['ops'])} |
| `utod_model_config.h` | input quantisation, arena size, anchors x wh_scale, class names, score mode, thresholds, output quantisation |
| `utod_postprocess.c/.h` | portable C99 decode + score + class-aware NMS, no heap |
| `utod_example.cc` | interpreter set-up, input fill, invoke, post-process |
| `model.tflite` | the same model as a file (for host tools) |

## What the firmware must do

1. **Resize** the camera frame to {w}x{h} with the training backend (`{info.resize_mode}`; stretch
   the whole frame, no letterbox), {_channels_text(info)}.
2. **Quantise**: {mapping}.
3. **Run**: `MicroInterpreter` with `UtodOpResolver` and
   `alignas(16) static uint8_t tensor_arena[UTOD_TENSOR_ARENA_SIZE]` ({arena_size:,} bytes: the
   {report['arena_bytes']:,} bytes the TFLite Micro runtime measured on a 64-bit host, plus
   max({margin:.0%}, {ARENA_MARGIN_MIN_BYTES} B) and 16 B slack). Log `arena_used_bytes()` once on the target.
4. **Decode**: pass the output tensors (data, `params.scale`, `params.zero_point`) to
   `utod_postprocess(&utod_model, ...)` with a scratch of `UTOD_PRE_NMS_TOPK` candidates. Boxes come
   back normalised (cx, cy, w, h) in [0, 1] of the network input; multiply by the frame size.

Outputs (interpreter order):

| index | group | shape | dtype | scale | zero point |
|---|---|---|---|---|---|
{outs}

Score mode `{info.score_mode}` (quality power {info.quality_power:g}), conf >= {info.conf_thresh:g},
NMS IoU {info.nms_iou:g}, at most {info.max_detections} detections. The C post-process gives the same
boxes as `utod predict` on `model.tflite` (tests/test_bundle.py compiles and checks it with gcc).
"""


def write_bundle(tflite_path: str | os.PathLike, out_dir: str | os.PathLike, *,
                 arena_margin: float = DEFAULT_ARENA_MARGIN) -> BundleSummary:
    """Write the firmware bundle for the quantised TFLite file ``tflite_path`` into ``out_dir``
    (created; an existing bundle there is replaced). ConfigError when TFLM cannot load the
    file or the folder cannot be written."""
    from utod.deploy.tflm import deploy_report
    from utod.infer.metadata import read_tflite_metadata

    content = Path(tflite_path).read_bytes()
    info_json = read_tflite_metadata(content)
    if info_json is None:
        raise ConfigError(f"{tflite_path}: no utod metadata")
    info = ModelInfo.from_json(info_json, str(tflite_path))
    report = deploy_report(content, info.raw_groups)
    if report["inputs"][0]["dtype"] not in ("int8", "int16"):
        raise ConfigError(f"{tflite_path}: the firmware bundle needs a full-integer model, int8 or 16x8 "
                          f"(input is {report['inputs'][0]['dtype']})")
    if not report["tflm_loads"]:
        raise ConfigError(report["tflm_error"] or f"{tflite_path}: TFLite Micro cannot load it")
    if not 0.0 <= arena_margin <= 10.0:
        raise ConfigError(f"--arena-margin must be between 0 and 10 (a fraction), got {arena_margin}")
    from utod import __version__

    info.extra["utod_version"] = __version__
    arena = arena_with_margin(int(report["arena_bytes"]), arena_margin)
    data_h, data_cc = model_data_files(content)
    files = {
        "utod_model_data.h": data_h,
        "utod_model_data.cc": data_cc,
        "utod_op_resolver.h": resolver_header(report["ops"]),
        "utod_model_config.h": config_header(info, report, arena, arena_margin),
        "utod_postprocess.h": (C_SOURCES / "utod_postprocess.h").read_text(),
        "utod_postprocess.c": (C_SOURCES / "utod_postprocess.c").read_text(),
        "utod_example.cc": EXAMPLE,
        "README.md": readme(info, report, arena, arena_margin),
    }
    final = Path(out_dir).resolve()
    parent = final.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{parent}: cannot create the output folder ({exc.strerror})") from None
    if not os.access(parent, os.W_OK):
        raise ConfigError(f"{parent}: output folder is not writable")
    if final.exists() and not final.is_dir():
        raise ConfigError(f"{final}: exists and is not a folder")
    tmp = parent / f".{final.name}.tmp{os.getpid()}"
    try:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        for name, text in files.items():
            (tmp / name).write_text(text, encoding="utf-8")
        (tmp / "model.tflite").write_bytes(content)
        old = None
        if final.exists():
            old = parent / f".{final.name}.old{os.getpid()}"
            os.replace(final, old)
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ConfigError(f"{final}: cannot write the bundle ({exc.strerror or exc})") from None
    return BundleSummary(str(final), sorted([*files, "model.tflite"]), int(report["arena_bytes"]), arena,
                         report["ops"])
