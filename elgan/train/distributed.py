"""Data-parallel training with PyTorch's own DistributedDataParallel (DDP), launched by ``torchrun``.

    torchrun --nproc_per_node=4 -m training.train_gan ...     # one node, 4 GPUs
    python -m training.train_gan ...                           # no torchrun: one process, nothing initialised

torchrun starts one process per GPU and tells each its place through RANK, WORLD_SIZE and LOCAL_RANK;
:func:`setup` reads them (no variables, or WORLD_SIZE=1: a single process and no process group, so the
code path of a plain ``python -m`` run is exactly the one it always was). Backend: NCCL for CUDA
devices, gloo for CPU (CPU clusters and the tests).

The conventions every trainer follows:
* the batch a user asks for is the *global* batch, split evenly (:func:`local_batch` refuses a remainder);
* each rank draws its own samples and codes from a seed derived from the run seed and its rank
  (:func:`rank_seed`), so ranks never duplicate work; rank 0 keeps the run seed itself;
* rank 0 alone touches the run folder (logs, samples, checkpoints); the others learn what they need by
  broadcast (:func:`on_main`), so the run folder need not be on storage shared by the nodes;
* identical weights start every rank (DDP broadcasts parameters and buffers from rank 0 once), and
  identical all-reduced gradients keep them identical: no buffer is re-broadcast at every forward.
"""

from __future__ import annotations

import datetime
import hashlib
import os
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..config import ConfigError

T = TypeVar("T")
# Rank 0 alone computes FD/FID, trains the RotNet and writes checkpoints while the others wait in a
# collective: allow that much longer than NCCL's 10-minute default before calling the run dead
# (ELGAN_DDP_TIMEOUT_MIN overrides it; the tests use a short one to fail fast instead of hanging).
TIMEOUT_MIN = 60.0


# ---- the process group --------------------------------------------------------------------------

def launched() -> bool:
    """True when torchrun (or an equivalent launcher) asked for more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def _wants_cuda(device: str) -> bool:
    return device == "cuda" or (device == "auto" and torch.cuda.is_available())


def setup(device: str = "auto") -> None:
    """Join the process group torchrun describes; idempotent, and a no-op without torchrun.

    `device` is the run's device flag (auto | cpu | cuda): CUDA runs use NCCL on GPU LOCAL_RANK, CPU
    runs gloo. Library entry points call this themselves, so ``train_gan(cfg, ...)`` works under
    torchrun whether or not the caller set anything up.
    """
    if not launched() or dist.is_initialized():
        return
    for name in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        if name not in os.environ:
            raise RuntimeError(f"WORLD_SIZE={os.environ['WORLD_SIZE']} but {name} is not set: launch with "
                               "torchrun (see docs/multi_gpu.md)")
    timeout = datetime.timedelta(minutes=float(os.environ.get("ELGAN_DDP_TIMEOUT_MIN", TIMEOUT_MIN)))
    if _wants_cuda(device):
        if not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' requested but CUDA is not available")
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))  # before NCCL init: one GPU per process
        dist.init_process_group("nccl", timeout=timeout)
    else:
        dist.init_process_group("gloo", timeout=timeout)


def cleanup() -> None:
    """Leave the process group (the CLIs call this on their way out)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def is_main() -> bool:
    """Rank 0: the one process that writes logs, samples, metrics and checkpoints."""
    return rank() == 0


def device(name: str) -> torch.device:
    """This rank's device for the flag auto | cpu | cuda: cuda:LOCAL_RANK under torchrun."""
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but CUDA is not available")
    if _wants_cuda(name):
        return torch.device("cuda", int(os.environ["LOCAL_RANK"])) if launched() else torch.device("cuda")
    return torch.device("cpu")


def _comm_device() -> torch.device:
    """Where collective tensors must live: the rank's GPU under NCCL, the CPU under gloo."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def barrier() -> None:
    """Wait for every rank (e.g. while rank 0 writes a checkpoint the others will read)."""
    if world_size() > 1:
        if dist.get_backend() == "nccl":
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()


# ---- batches and seeds --------------------------------------------------------------------------

def local_batch(global_batch: int, what: str = "batch") -> int:
    """This rank's share of the global batch; refuses a batch the ranks cannot split evenly (uneven
    shares would weight the ranks' gradients unequally in DDP's average)."""
    n = world_size()
    if global_batch % n:
        lo, hi = global_batch // n * n, -(-global_batch // n) * n
        raise ConfigError(f"{what} {global_batch} does not split over the {n} processes of this launch: "
                          f"the {what} is global (each process takes {what} / {n}); use a multiple of {n}, "
                          f"e.g. {lo or hi} or {hi}")
    return global_batch // n


def rank_seed(seed: int, rank_: int | None = None) -> int:
    """Seed of a rank's data and code draws: the run seed on rank 0 (a one-process run is unchanged),
    a well-mixed one elsewhere. Not seed + rank: the trainers already use seed + 1 ... seed + 4 for the
    sample grid, RotNet and FD draws, and rank 1's training draws must not replay one of those."""
    r = rank() if rank_ is None else rank_
    if r == 0:
        return seed
    return int(np.random.SeedSequence([seed, 0x5EED, r]).generate_state(1, np.uint64)[0] >> np.uint64(1))


def rank_generator_state(saved: list[torch.Tensor], rank_: int | None = None) -> torch.Tensor:
    """The data/code RNG state a resumed rank continues from, given the states saved per rank.

    Resumed with as many ranks as saved, each rank continues its own stream: bit-exact resume. With
    another number of ranks, rank 0 continues rank 0's stream and rank r > 0 starts a fresh stream
    seeded by (rank 0's saved state, r): reproducible, distinct per rank, but not the stream an
    uninterrupted run with the new number of ranks would have drawn.
    """
    r = rank() if rank_ is None else rank_
    if len(saved) == world_size() or r == 0:
        return saved[r]
    digest = hashlib.sha256(saved[0].numpy().tobytes() + r.to_bytes(4, "little")).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1).get_state()


# ---- collectives --------------------------------------------------------------------------------

def broadcast_object(obj: T) -> T:
    """Rank 0's (picklable, CPU) object on every rank."""
    if world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0, device=_comm_device())
    return box[0]


def on_main(fn: Callable[[], T]) -> T:
    """Run `fn` on rank 0 only and hand its result -- or its exception -- to every rank.

    File-system work (refusing to overwrite a run, reading a checkpoint, writing config.json) happens
    once, and a refusal stops every process alike instead of leaving the others waiting in a collective.
    """
    result: Any = None
    error: BaseException | None = None
    if is_main():
        try:
            result = fn()
        except Exception as exc:  # handed to every rank, then raised everywhere
            error = exc
    if world_size() > 1:
        result, error = broadcast_object((result, error))
    if error is not None:
        raise error
    return result


def gather_states(state: torch.Tensor) -> list[torch.Tensor]:
    """Every rank's copy of a same-shaped CPU tensor (e.g. RNG states), indexed by rank."""
    if world_size() == 1:
        return [state]
    t = state.to(_comm_device())
    parts = [torch.empty_like(t) for _ in range(world_size())]
    dist.all_gather(parts, t)
    return [p.cpu() for p in parts]


def mean_scalars(logs: dict[str, float]) -> dict[str, float]:
    """Average logged scalars over the ranks (each rank measured its own share of the batch)."""
    if world_size() == 1 or not logs:
        return logs
    keys = sorted(logs)
    t = torch.tensor([float(logs[k]) for k in keys], dtype=torch.float64, device=_comm_device())
    dist.all_reduce(t)
    return dict(zip(keys, (t / world_size()).tolist(), strict=True))


def any_rank(flag: bool) -> bool:
    """True on every rank if it is true on one (e.g. a wall-time limit: all ranks must stop together)."""
    if world_size() == 1:
        return flag
    t = torch.tensor([int(flag)], device=_comm_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


class _AllReduceSum(torch.autograd.Function):
    """Differentiable all-reduce: the gradient of a sum over ranks is the sum of every rank's gradient."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        x = x.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return _AllReduceSum.apply(grad)


class _GatherWithGrad(torch.autograd.Function):
    """all_gather along dim 0 that passes each rank its share of the summed gradient back."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(x) for _ in range(world_size())]
        dist.all_gather(parts, x.contiguous())
        ctx.n = x.shape[0]
        return torch.cat(parts)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad)
        return grad[rank() * ctx.n:(rank() + 1) * ctx.n]


def gather_batch(x: torch.Tensor) -> torch.Tensor:
    """The global batch [N_total, ...] from every rank's share, in rank order, differentiably.

    For batch statistics (Phi's moment regulariser) that must see the whole batch to be independent of
    the number of ranks. Every rank computes the same statistic; the backward all-reduce hands each rank
    N times its own share of the gradient, and DDP's 1/N average of the parameter gradients cancels it.
    """
    return x if world_size() == 1 else _GatherWithGrad.apply(x)


# ---- modules ------------------------------------------------------------------------------------

def wrap(module: nn.Module, find_unused_parameters: bool = False) -> nn.Module:
    """DDP around `module` when there is more than one rank, else the module itself.

    forward_sync_buffers=False (torch 2.13's name for broadcast_buffers=False, minus its skipping of the
    initial broadcast): buffers (BatchNorm running statistics, spectral norm's u/v vectors) are
    broadcast from rank 0 once, when DDP wraps, and not again before every forward. SyncBatchNorm makes
    the running statistics identical on every rank, and spectral norm's power iteration is a
    deterministic function of identical weights and identical vectors (on identical GPUs: the same
    kernels), so they stay identical by construction -- tests/test_distributed.py checks bit-identical
    buffers after training -- and a per-forward broadcast would be a collective for nothing, and one
    that would hang when rank 0 alone runs a net for samples or FD.

    find_unused_parameters: only for a module whose backward leaves some parameter without gradient
    (D's E_x head when the recovery loss is off). Otherwise DDP would keep waiting for that gradient,
    and the next backward through the plain module (the G phase's pass through D) would fire its
    hooks again ("marked ready twice"). With it on, DDP learns from each backward's graph which
    parameters it skipped, at the cost of a graph traversal.
    """
    if world_size() == 1:
        return module
    dev = next(module.parameters()).device
    return DistributedDataParallel(module, device_ids=[dev.index] if dev.type == "cuda" else None,
                                   find_unused_parameters=find_unused_parameters, forward_sync_buffers=False)


def unwrap(module: nn.Module) -> nn.Module:
    """The plain module inside a DDP wrapper (for calls that must not sync: eval, sampling, saving)."""
    return module.module if isinstance(module, DistributedDataParallel) else module


def broadcast_module(module: nn.Module) -> nn.Module:
    """Overwrite every parameter and buffer with rank 0's (a frozen net rank 0 trained alone)."""
    if world_size() > 1:
        for t in [*module.parameters(), *module.buffers()]:
            buf = t.detach().to(_comm_device())
            dist.broadcast(buf, src=0)
            t.data.copy_(buf)
    return module


class CpuSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm over the global batch for CPU tensors, which torch's SyncBatchNorm (and DDP around
    it) refuses: CPU clusters and the gloo tests. CUDA runs use torch's SyncBatchNorm.

    The same mean and biased variance as BatchNorm, over every rank's share of the batch, from two
    differentiable all-reduces; running statistics updated as BatchNorm does (unbiased variance,
    momentum or cumulative average). State dict keys are BatchNorm's.
    """

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {x.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and world_size() > 1):
            return super().forward(x)
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        count = torch.tensor([x.numel() // x.shape[1]])
        dist.all_reduce(count)
        n = int(count)  # values per channel over every rank
        xf = x.float()  # statistics in fp32 also under autocast
        mean = _AllReduceSum.apply(xf.sum(dims)) / n  # [C]
        centred = xf - mean.view(shape)
        var = _AllReduceSum.apply(centred.pow(2).sum(dims)) / n  # biased, as BatchNorm normalises
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                f = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.mul_(1 - f).add_(mean.detach(), alpha=f)
                self.running_var.mul_(1 - f).add_(var.detach() * (n / max(n - 1, 1)), alpha=f)
        return out.to(x.dtype)


def sync_batchnorm(module: nn.Module) -> nn.Module:
    """Every BatchNorm of `module` normalised over the global batch, so that a step does not depend on
    how the batch is split over ranks (the generator's BatchNorm sees its codes and walked codes):
    torch's SyncBatchNorm on CUDA, :class:`CpuSyncBatchNorm` on CPU. Parameters and buffers are shared
    with the replaced layers, so optimisers and state dicts are unaffected; a no-op on one rank."""
    if world_size() == 1:
        return module
    if next(module.parameters()).device.type != "cpu":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _cpu_sync_batchnorm(module)


def _cpu_sync_batchnorm(module: nn.Module) -> nn.Module:
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        out = CpuSyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                               module.track_running_stats)
        if module.affine:
            out.weight, out.bias = module.weight, module.bias
        out.running_mean, out.running_var = module.running_mean, module.running_var
        out.num_batches_tracked = module.num_batches_tracked
        out.train(module.training)
        return out
    for name, child in module.named_children():
        module.add_module(name, _cpu_sync_batchnorm(child))
    return module
