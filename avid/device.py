"""Where the networks run: the ``device`` setting (auto | cpu | cuda), resolved once per process.

``auto`` takes the first CUDA GPU when torch can use one and the CPU otherwise, so on a machine without a GPU every
default stays the CPU path it always was. ``cuda`` on a machine without a usable GPU is a ConfigError that says
so, not a crash inside a network. dlib (face descriptors and landmarks) and OpenCV's DNN module (SFace) stay on the
CPU: their PyPI builds have no CUDA.
"""
from __future__ import annotations

from functools import lru_cache

from .errors import ConfigError

CHOICES = ("auto", "cpu", "cuda")


def resolve_device(wanted: str) -> str:
    """"cpu" or "cuda" for a ``device`` setting."""
    wanted = str(wanted)
    if wanted not in CHOICES:
        raise ConfigError(f"device must be one of {', '.join(CHOICES)}, not {wanted!r}")
    if wanted == "cpu":
        return "cpu"
    usable = _cuda_usable()
    if wanted == "cuda" and not usable:
        raise ConfigError("device: cuda asks for a GPU, but torch finds no usable CUDA device here "
                          "(no GPU, no driver, or a CPU-only torch): set device: cpu or auto")
    return "cuda" if usable else "cpu"


def torch_device(cfg):
    """The torch.device the config's networks run on."""
    import torch

    return torch.device(resolve_device(cfg.device))


@lru_cache(maxsize=1)
def _cuda_usable() -> bool:
    import torch

    try:
        return bool(torch.cuda.is_available()) and torch.cuda.device_count() > 0
    except Exception:          # a broken driver install raises from inside torch.cuda
        return False
