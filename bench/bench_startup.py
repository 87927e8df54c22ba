"""Start-up: seconds from launching `utod train` to its first training step, and from
launching `utod eval` to its first batch (prints numbers; not a test).

Generates ``--images`` labelled 320x320 JPEGs, then runs, as fresh processes (imports
included, as a user sees it), ``--repeats`` times each:

* ``utod train`` (W=64, 64x64, batch 16, 1 epoch, a new cache folder): the time until the
  first progress line, which is printed after step 1 (``--log-interval 1``), and the whole
  command;
* ``utod eval best.keras`` on 8 images (one batch): the whole command, i.e. start-up plus
  the first batch plus scoring 8 images (a few ms).

``--pythonpath DIR`` runs another source tree (e.g. an older commit unpacked with
``git archive``) for before/after comparisons. The machine is shared: the load average is
printed, and CPU seconds (user + sys of the child) are less sensitive to it than wall time.

    python bench/bench_startup.py [--images 64] [--repeats 3] [--pythonpath DIR]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_export import load_average  # same folder: run as `python bench/bench_startup.py`
from bench_pipeline import make_images

UTOD = [sys.executable, "-c", "import sys; sys.argv[0] = 'utod'; from utod.cli import main; main()"]


def _child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_until(args: list[str], marker: bytes | None, env: dict[str, str]) -> tuple[float | None, float, float]:
    """(seconds until ``marker`` appears on stdout, seconds until exit, child CPU seconds)."""
    cpu0 = _child_cpu()
    t0 = time.perf_counter()
    proc = subprocess.Popen(UTOD + args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    seen, buf = None, b""
    assert proc.stdout is not None
    while chunk := proc.stdout.read1(4096):
        buf += chunk
        if seen is None and marker is not None and marker in buf:
            seen = time.perf_counter() - t0
    rc = proc.wait()
    total = time.perf_counter() - t0
    if rc != 0:
        raise RuntimeError(f"utod {' '.join(args)} failed ({rc}):\n{buf.decode(errors='replace')[-2000:]}")
    return seen, total, _child_cpu() - cpu0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--pythonpath", default=None, help="source tree to run instead of the installed one")
    args = ap.parse_args()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if args.pythonpath:
        env["PYTHONPATH"] = os.pathsep.join([args.pythonpath, env.get("PYTHONPATH", "")]).strip(os.pathsep)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data, small = tmp / "data", tmp / "small"
        data.mkdir()
        small.mkdir()
        make_images(data, args.images, size=320)
        for p in sorted(data.iterdir())[:16]:  # 8 images and their labels
            (small / p.name).write_bytes(p.read_bytes())
        load_before = load_average()
        rows: dict[str, list[float]] = {}
        for r in range(args.repeats):
            run = tmp / f"run{r}"
            first, total, cpu = run_until(
                ["train", "--image-dir", str(data), "--epochs", "1", "--batch-size", "16", "--img-size", "64",
                 "--cnn-width", "64", "--classes", "0", "--log-interval", "1", "--ckpt-out", str(run),
                 "--cache-dir", str(tmp / f"cache{r}")], b"epoch 1/1 [", env)
            rows.setdefault("train_first_step", []).append(first or float("nan"))
            rows.setdefault("train_total", []).append(total)
            rows.setdefault("train_cpu", []).append(cpu)
            _, total, cpu = run_until(["eval", str(run / "best.keras"), "--image-dir", str(small)], None, env)
            rows.setdefault("eval_total", []).append(total)
            rows.setdefault("eval_cpu", []).append(cpu)
    med = {k: statistics.median(v) for k, v in rows.items()}
    print(f"\n=== bench_startup ({args.pythonpath or 'installed utod'}; {os.cpu_count()} cores; load average "
          f"before {load_before}, after {load_average()}; medians of {args.repeats}) ===")
    print(f"utod train -> first step: {med['train_first_step']:.1f} s "
          f"(whole 1-epoch command {med['train_total']:.1f} s wall, {med['train_cpu']:.1f} s CPU)")
    print(f"utod eval -> first batch done (8 images, one batch): {med['eval_total']:.1f} s wall, "
          f"{med['eval_cpu']:.1f} s CPU")
    print("all runs: " + "; ".join(f"{k} " + "/".join(f"{v:.1f}" for v in vs) for k, vs in rows.items()))


if __name__ == "__main__":
    main()
