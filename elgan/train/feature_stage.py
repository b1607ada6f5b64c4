"""The pipeline's features stage: the self-supervised RotNet, trained once per recipe and shared.

A pipeline run whose GAN needs a RotNet (eq. (8)'s perceptual net, or the FD-RotNet embedding) gets it
from a cache folder shared by runs, keyed by a hash of everything that shapes the trained weights: the
training images (data spec, with a fingerprint of the files of a folder data set; size; how many), the
seed, the RotNet's steps, its architecture and training settings, and the kind of device (CPU and GPU
round differently). Runs on the same data -- the ablation's configs A-E, a screen of settings -- thus
train it once, and their GAN stages are handed the file through the ``rotnet`` path field.

Inside a GAN run (``python -m training.train_gan``) the RotNet's initial weights are drawn after the
GAN's networks, so they depend on the run's config; here they come from the seed alone (seed + 5; the
batches from seed + 2, as in a GAN run), which is what lets runs of other configs share the net.

A cache entry is ``rotnet-<size>px-<key>.safetensors`` with its key, what it was trained on and a
digest of its weights in the file's metadata (and in ``<name>.json`` beside it, to read). It is
written atomically, by one run at a time (a lock file beside it; a second run waits, then finds it),
and checked before every use: a damaged or foreign file is set aside as ``<name>.rejected`` and
trained again, never used.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import CheckpointError, atomic_write_text, load_bundle, load_into
from ..config import GanTrainConfig, from_dict, replace
from ..data import parse_spec
from ..nets.rotnet import RotNet, RotNetConfig
from . import distributed as ddp
from .instruments import needs_rotnet
from .rotnet_trainer import BATCH, LR, fit_rotnet, save_rotnet

CACHE_ENV = "ELGAN_FEATURE_CACHE"  # the cache folder when PipelineConfig.feature_cache is ''
CACHE_NAME = "feature_cache"  # otherwise: this folder beside the run folder
RECIPE = 1  # raise when training changes in a way the key does not see: older entries are then not used
INIT_SEED_OFFSET = 5  # initial weights from seed + 5 (seed + 1..4 are the GAN run's other streams)
DONE = "DONE"  # elgan/pipeline.py's stage marker


class FeatureCacheError(CheckpointError):
    """A cached RotNet that a run depends on cannot be found or used where the run expects it."""


def cache_dir(setting: str, run_dir: Path) -> Path:
    """The cache folder: the knob, else $ELGAN_FEATURE_CACHE, else feature_cache/ beside the run folder."""
    return Path(setting or os.environ.get(CACHE_ENV) or run_dir.parent / CACHE_NAME).expanduser().resolve()


def skip_reason(gan: GanTrainConfig) -> str | None:
    """Why this GAN config takes no RotNet from the stage (None: it does)."""
    if gan.rotnet:
        return f"the GAN uses the given perceptual net {gan.rotnet}"
    if not needs_rotnet(gan):
        used = f"perceptual net {gan.perceptual}" if gan.loss.equivariance else "no equivariance loss"
        return f"no RotNet needed ({used}, FD net {'Inception' if gan.inception else gan.fd_net})"
    return None


def data_identity(spec: str) -> dict[str, Any]:
    """The training images as the key sees them: synthetic data is made from the seed; a folder (CUB,
    LSUN) is its absolute path and a digest of its file listing (names, sizes, modification times), so
    that changed files give another key. LMDB's lock.mdb, rewritten by every reader, is left out."""
    kind, path = parse_spec(spec)
    if kind == "synthetic":
        return {"kind": kind}
    root = Path(path).resolve()
    files = sorted(f for f in root.rglob("*") if f.is_file() and f.name != "lock.mdb") if root.is_dir() else [root]
    listing = hashlib.sha256()
    for f in files:
        if f.exists():
            st = f.stat()
            listing.update(f"{f.relative_to(root) if f != root else f.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return {"kind": kind, "path": str(root), "files": len(files), "listing_sha256": listing.hexdigest()}


def key_fields(gan: GanTrainConfig, device: torch.device) -> dict[str, Any]:
    """Everything that shapes the trained weights (see the module's docstring)."""
    from .gan_trainer import STREAM_REFERENCE

    return {"recipe": RECIPE, "data": data_identity(gan.data), "size": gan.size,
            "images_limit": gan.data_limit or (STREAM_REFERENCE if gan.stream else 0), "seed": gan.seed,
            "iters": gan.rotnet_iters, "net": asdict(RotNetConfig()), "batch": BATCH, "lr": LR,
            "device": device.type}


def key_of(fields: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def entry_path(folder: Path, fields: dict[str, Any], key: str) -> Path:
    return folder / f"rotnet-{fields['size']}px-{key[:16]}.safetensors"


def weights_digest(state: dict[str, torch.Tensor]) -> str:
    """sha256 of the tensors' names, dtypes, shapes and bytes (safetensors itself has no checksum)."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def check_entry(path: Path, key: str) -> str | None:
    """Why the file at `path` is not a usable RotNet for `key` (None: it is)."""
    if not path.exists():
        return "no such file"
    try:
        bundle = load_bundle(path, require=["rotnet"])
        meta, state = bundle.metadata, bundle.state_dict("rotnet")
        if meta.get("feature_key") != key:
            return f"it was trained for another key ({str(meta.get('feature_key'))[:16]}), not {key[:16]}"
        if meta.get("weights_sha256") != weights_digest(state):
            return "its weights do not match the digest written with them (damaged file)"
        load_into(RotNet(from_dict(RotNetConfig, bundle.config("rotnet"))), state, f"RotNet of {path}")
    except (CheckpointError, ValueError, TypeError) as exc:
        return f"unreadable ({exc})"
    return None


@contextlib.contextmanager
def _exclusive(path: Path, log: Callable[[str], None]) -> Iterator[None]:
    """One process at a time trains a key: an OS lock on a file beside it, released even if the holder is
    killed. Where there is no fcntl (Windows) two runs may both train; the last complete file stays."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"[features] another run is training {path.name}; waiting for it")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _train(gan: GanTrainConfig, fields: dict[str, Any], key: str, path: Path, device: torch.device,
           progress: bool) -> None:
    from ..data import load_dataset

    if gan.threads > 0:
        torch.set_num_threads(gan.threads)
    t = time.perf_counter()
    limit = fields["images_limit"] or None
    real = load_dataset(gan.data, "train", gan.size, with_masks=False, seed=gan.seed, limit=limit,
                        progress=progress).images  # the images the GAN stage trains on (or holds, streaming)
    net, stats = fit_rotnet(real, gan.rotnet_iters, gan.seed, device, progress, init_seed=gan.seed + INIT_SEED_OFFSET)
    meta = {"feature_key": key, "trained_on": fields, "images": int(real.shape[0]), **stats,
            "weights_sha256": weights_digest(net.state_dict()), "train_s": round(time.perf_counter() - t, 2),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    save_rotnet(net, path, meta)  # atomic (temporary file, then rename), under the lock
    atomic_write_text(path.with_name(path.stem + ".json"), json.dumps(meta, indent=2, sort_keys=True))


def still_usable(earlier: dict[str, Any], root: Path) -> bool:
    """Rank 0, on resume: a finished stage's record stands if it was skipped, if the GAN stage has ended
    (nothing reads the RotNet after it), or if its file is still intact."""
    return (earlier.get("status") == "skipped" or (root / "gan" / DONE).exists()
            or check_entry(Path(earlier["path"]), earlier["key"]) is None)


def run_stage(gan: GanTrainConfig, root: Path, cache: str, earlier: dict[str, Any] | None, progress: bool,
              log: Callable[[str], None] = print) -> dict[str, Any]:
    """Rank 0: the stage's record -- skipped (and why), or a cache hit or miss with the key and the file.

    `earlier` is the record of a run that is being resumed and whose file has gone or is damaged. A run
    whose GAN stage began without this stage (a run folder from before it existed) keeps the RotNet in
    its own folder: its config is never changed."""
    t = time.perf_counter()
    reason = skip_reason(gan)
    if reason is None and earlier is None and (root / "gan").exists():
        reason = "the GAN stage began before the pipeline had a features stage; it keeps its own RotNet"
    if reason is not None:
        return {"status": "skipped", "reason": reason, "wall_s": time.perf_counter() - t}
    device = ddp.device(gan.device)
    fields = key_fields(gan, device)
    key = key_of(fields)
    path = entry_path(cache_dir(cache, root), fields, key)
    if earlier is not None and (root / "gan").exists() and Path(earlier["path"]) != path:
        raise FeatureCacheError(f"{earlier['path']}, the RotNet this run's GAN stage began with, is missing or "
                                f"damaged, and it would now be trained as {path}; restore the file (or the cache "
                                "folder and --feature-cache of the run), or start the run anew")
    record: dict[str, Any] = {"status": "hit", "key": key, "path": str(path), "trained_on": fields}
    if check_entry(path, key) is not None:  # then again under the lock: another run may be writing it
        with _exclusive(path, log):
            why = check_entry(path, key)
            if why is not None:
                record["status"] = "miss"
                if path.exists():
                    os.replace(path, path.with_name(path.name + ".rejected"))
                    record["rebuilt"] = why
                    log(f"[features] {path} is not usable: {why}; set aside as .rejected, training it again")
                _train(gan, fields, key, path, device, progress)
    record["wall_s"] = time.perf_counter() - t
    return record


def gan_config(gan: GanTrainConfig, record: dict[str, Any]) -> GanTrainConfig:
    """The GAN stage's config: the cached file in the ``rotnet`` field, so the GAN trains none."""
    return gan if record["status"] == "skipped" else replace(gan, rotnet=record["path"])


def summary(record: dict[str, Any]) -> str:
    if record["status"] == "skipped":
        return f"skipped: {record['reason']}"
    what = "cache hit" if record["status"] == "hit" else "cache miss, trained"
    rebuilt = f" (the file there was not usable: {record['rebuilt']})" if record.get("rebuilt") else ""
    return f"RotNet {what}: key {record['key'][:16]}, {record['path']}{rebuilt}, {record['wall_s']:.0f} s"
