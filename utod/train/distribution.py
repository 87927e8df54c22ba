"""Distribution of a training run: the ``tf.distribute`` strategy, and which worker writes.

``--strategy`` chooses:

* ``default``: one device;
* ``mirrored``: ``MirroredStrategy`` over all local GPUs; on a machine without GPUs and with
  ``UTOD_CPU_REPLICAS=N`` (N > 1), over N logical CPU devices (how the tests run 2 replicas);
* ``multiworker``: ``MultiWorkerMirroredStrategy``; the cluster comes from ``TF_CONFIG``
  (one process per worker, every worker runs the same ``utod train`` command).

Only the **chief** (task ``chief``, or ``worker`` 0 when the cluster has no chief) writes the
run folder. The other workers still execute every step, validation and save (the collective
ops need all of them) but write into a worker folder of their own: ``UTOD_WORKER_DIR`` when
set (kept), else a temporary folder removed when the run ends. On ``--resume`` a worker
starts from the chief's saved train state, copied from the run folder, so every worker of a
resumed run restores the same state. The run folder must therefore be readable by every
worker (one host, or a shared filesystem).

The strategy must exist before TensorFlow initialises its runtime (collective ops and
logical devices are configured at start-up): create it first thing in a run.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from utod.errors import ConfigError

STRATEGIES = ("default", "mirrored", "multiworker")
STATE_DIR = "train_state"
RESUME_FILES = ("train.txt", "val.txt", "results.csv")
"""What a resuming worker copies from the chief's run folder besides the train state."""


def configure_devices(strategy: str) -> None:
    """Before TensorFlow starts its runtime: split the CPU into logical devices when asked
    (``UTOD_CPU_REPLICAS=N`` with ``--strategy mirrored`` on a machine without GPUs)."""
    from utod._keras import tf

    n = int(os.environ.get("UTOD_CPU_REPLICAS", "0") or 0)
    if strategy == "mirrored" and n > 1 and not tf.config.list_physical_devices("GPU"):
        cpus = tf.config.list_physical_devices("CPU")
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(n)]
        )


def make_strategy(name: str):
    """The ``tf.distribute.Strategy`` for ``--strategy name`` (see the module docstring)."""
    from utod._keras import tf

    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices=devices)
    if name == "multiworker":
        if not os.environ.get("TF_CONFIG"):
            raise ConfigError("--strategy multiworker needs TF_CONFIG (the cluster and this worker's task); "
                              "see the README section 'Training on several machines'")
        try:
            json.loads(os.environ["TF_CONFIG"])
        except json.JSONDecodeError as exc:
            raise ConfigError(f"TF_CONFIG is not valid JSON: {exc}") from None
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ConfigError(f"unknown strategy '{name}'; choose one of {', '.join(STRATEGIES)}")


@dataclass(frozen=True)
class WorkerRole:
    """This process's place in the cluster (one-process runs: the chief of one)."""

    task_type: str = "chief"
    task_id: int = 0
    num_workers: int = 1

    @property
    def is_chief(self) -> bool:
        return self.task_type == "chief" or (self.task_type == "worker" and self.task_id == 0
                                             and not self._has_chief)

    _has_chief: bool = False


def sum_and_clip(grads: list, clip_norm: float | None) -> tuple[list, Any]:
    """In a replica context: the replicas' gradients summed (what the optimiser applies; apply
    them with ``skip_gradients_aggregation=True``), clipped by the global norm of that sum
    when ``clip_norm > 0``. Returns ``(gradients, global norm before clipping)``.

    Clipping the *sum* keeps ``--grad-clip-norm`` meaning what it means on one device (each
    replica clipping its own share would clip at ``replicas`` times the norm), and the norm
    is the same on every replica and equal to a one-device run's, so a loss-scaling mistake
    (a gradient ``replicas`` times too large or small) shows in ``train_grad_norm``.
    With one replica nothing is communicated."""
    from utod._keras import tf

    ctx = tf.distribute.get_replica_context()
    if ctx is not None and ctx.num_replicas_in_sync > 1:
        grads = ctx.all_reduce(tf.distribute.ReduceOp.SUM, grads)
    norm = tf.linalg.global_norm(grads)
    if clip_norm and clip_norm > 0:
        grads, _ = tf.clip_by_global_norm(grads, clip_norm, use_norm=norm)
    return grads, norm


def worker_role(strategy: str) -> WorkerRole:
    """Who this process is: for ``--strategy multiworker`` read from ``TF_CONFIG`` (without
    importing TensorFlow, so it is known before the run folder is touched); otherwise the
    chief of a one-process run."""
    if strategy != "multiworker" or not os.environ.get("TF_CONFIG"):
        return WorkerRole()
    try:
        spec = json.loads(os.environ["TF_CONFIG"])
        cluster = spec.get("cluster") or {}
        task = spec.get("task") or {}
        task_type, task_id = str(task["type"]), int(task.get("index", 0))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ConfigError(f"TF_CONFIG must be JSON with 'cluster' and 'task': {{'type', 'index'}} ({exc})") from None
    workers = sum(len(v) for k, v in cluster.items() if k in ("chief", "worker"))
    return WorkerRole(task_type, task_id, workers, "chief" in cluster)


def write_dir_for(run_dir: Path, role: WorkerRole, resuming: bool) -> Path:
    """Where this process writes: the run folder for the chief, a worker folder otherwise
    (with the chief's train state copied in when resuming)."""
    if role.is_chief:
        return run_dir
    given = os.environ.get("UTOD_WORKER_DIR")
    path = Path(given) if given else Path(tempfile.mkdtemp(prefix=f"utod-{role.task_type}{role.task_id}-"))
    path.mkdir(parents=True, exist_ok=True)
    if resuming:
        state = path / STATE_DIR
        if state.exists():
            shutil.rmtree(state)
        if (run_dir / STATE_DIR).is_dir():
            shutil.copytree(run_dir / STATE_DIR, state)
        for name in RESUME_FILES:
            if (run_dir / name).is_file():
                shutil.copy2(run_dir / name, path / name)
    return path


def release_write_dir(write_dir: Path, run_dir: Path) -> None:
    """Remove a temporary worker folder at the end of the run (a given UTOD_WORKER_DIR stays)."""
    if write_dir != run_dir and not os.environ.get("UTOD_WORKER_DIR"):
        shutil.rmtree(write_dir, ignore_errors=True)
