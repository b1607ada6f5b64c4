"""Mixed precision for the trainers: one resolved choice per run, autocast around the forward passes,
a GradScaler per optimiser for fp16, and the numerically delicate parts kept in fp32.

    fp32   no autocast at all: the exact code path of a run without this module
    bf16   autocast to bfloat16; same exponent range as fp32, so no loss scaling is needed
    fp16   autocast to float16 with a GradScaler per optimiser (its state is part of the resume state)
    auto   bf16 on CUDA GPUs that support it (Ampere and later), fp32 otherwise (CPU, older GPUs)

Kept in fp32 whatever the choice: losses (network outputs are cast back with ``.float()`` before any
loss term), Phi's tiny MLP and the moment regulariser, and spectral norm's power iteration -- its
normalisations would lose most of their digits in bf16, and the estimated sigma divides every weight
of D and E_pi.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..config import ConfigError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve(name: str, device: torch.device) -> str:
    """"auto" -> "bf16" on a CUDA GPU with bf16 support, else "fp32"; other names are checked."""
    if name not in PRECISIONS:
        raise ConfigError(f"precision must be one of {PRECISIONS}, got {name!r}")
    cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    if name == "auto":
        return "bf16" if cuda_bf16 else "fp32"
    if name == "bf16" and device.type == "cuda" and not cuda_bf16:
        raise ConfigError("precision bf16: this GPU has no bfloat16 support; use fp16 or fp32")
    return name


class Precision:
    """The run's precision on one device: ``autocast()`` contexts and ``grad_scaler()`` factories."""

    def __init__(self, name: str, device: torch.device) -> None:
        self.name = resolve(name, device)
        self.dtype = _DTYPES[self.name]
        self.device_type = device.type

    @property
    def mixed(self) -> bool:
        return self.dtype != torch.float32

    def autocast(self) -> contextlib.AbstractContextManager:
        """torch.autocast for bf16/fp16; for fp32 a null context, so fp32 runs are exactly as before."""
        if not self.mixed:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """A loss scaler for fp16 (small gradients underflow in float16); a pass-through otherwise."""
        return torch.amp.GradScaler(self.device_type, enabled=self.dtype == torch.float16)

    def fp32_parametrizations(self, *modules: nn.Module) -> None:
        """Run every parametrization (here: spectral norm) with autocast off, on fp32 weights.

        A parametrization is evaluated when the layer reads its weight, i.e. inside the layer's
        forward and so inside autocast; the layer still casts the normalised weight for its matmul.
        """
        if not self.mixed:
            return
        for module in modules:
            for m in module.modules():
                if not parametrize.is_parametrized(m):
                    continue
                for plist in m.parametrizations.values():
                    for p in plist:
                        p.forward = _without_autocast(p.forward, self.device_type)

    def float_outputs(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """`fn` under autocast, with its tensor outputs (a tensor or a list of them) cast to fp32."""
        if not self.mixed:
            return fn

        def run(*args: Any, **kwargs: Any) -> Any:
            with self.autocast():
                out = fn(*args, **kwargs)
            return [t.float() for t in out] if isinstance(out, (list, tuple)) else out.float()

        return run


def _without_autocast(forward: Callable[..., torch.Tensor], device_type: str) -> Callable[..., torch.Tensor]:
    def run(*args: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type, enabled=False):
            return forward(*(a.float() for a in args))

    return run
