"""``--device cpu|0|0,1``: which devices train, and so which ``tf.distribute`` strategy.

* ``cpu``: GPUs are hidden from TensorFlow; one device, the default strategy.
* ``0`` / ``1`` ...: that one GPU; the default strategy.
* ``0,1`` ...: those GPUs; ``MirroredStrategy`` over them (``--strategy multiworker`` is kept).
* not given: TensorFlow's own choice and ``--strategy`` as given (the previous behaviour).

:func:`parse_device` is pure (no TensorFlow) so a typo is reported before any work;
:func:`apply_device` must run before TensorFlow initialises its devices.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from utod.errors import ConfigError


@dataclass(frozen=True)
class DeviceRequest:
    """``cpu`` True: CPU only; otherwise ``gpus``: the physical GPU indices asked for."""

    text: str
    cpu: bool
    gpus: tuple[int, ...]

    @property
    def several(self) -> bool:
        return len(self.gpus) > 1


def parse_device(text: str | None) -> DeviceRequest | None:
    """``"cpu"`` / ``"0"`` / ``"0,1"`` (spaces allowed; ``cuda:0`` and ``gpu:0`` accepted)."""
    if text is None or str(text).strip() == "":
        return None
    s = str(text).strip().lower()
    if s == "cpu":
        return DeviceRequest(s, True, ())
    gpus: list[int] = []
    for part in s.split(","):
        p = part.strip().removeprefix("cuda:").removeprefix("gpu:")
        if not p.isdigit():
            raise ConfigError(f"--device {text}: expected 'cpu', a GPU index such as 0, or a list such as 0,1")
        if int(p) in gpus:
            raise ConfigError(f"--device {text}: GPU {p} is listed twice")
        gpus.append(int(p))
    return DeviceRequest(s, False, tuple(gpus))


def strategy_for(request: DeviceRequest | None, strategy: str) -> str:
    """The strategy name a request implies: several GPUs -> ``mirrored`` (unless
    ``multiworker``), one device -> ``default``; no request -> ``strategy`` unchanged."""
    if request is None:
        return strategy
    if request.several:
        return strategy if strategy == "multiworker" else "mirrored"
    return "default"


def apply_device(request: DeviceRequest | None, log: Callable[[str], None] = print) -> None:
    """Make only the requested devices visible to TensorFlow. A GPU index this machine does
    not have is a ConfigError naming the GPUs there are."""
    if request is None:
        return
    from utod._keras import tf

    gpus = tf.config.list_physical_devices("GPU")
    if request.cpu:
        wanted: list = []
    else:
        missing = [i for i in request.gpus if i >= len(gpus)]
        if missing:
            have = f"GPUs 0..{len(gpus) - 1}" if gpus else "no GPU"
            raise ConfigError(f"--device {request.text}: no GPU {missing[0]} on this machine (it has {have}); "
                              f"use --device cpu" + (f" or --device 0..{len(gpus) - 1}" if gpus else ""))
        wanted = [gpus[i] for i in request.gpus]
    if gpus:
        try:
            tf.config.set_visible_devices(wanted, "GPU")
        except RuntimeError:
            visible = tf.config.get_visible_devices("GPU")
            if [d.name for d in visible] != [d.name for d in wanted]:
                raise ConfigError(f"--device {request.text}: TensorFlow has already started in this process "
                                  f"with other devices; choose the device in a new process") from None
    names = "CPU" if request.cpu else ", ".join(f"GPU {i}" for i in request.gpus)
    log(f"Device: {names}")
