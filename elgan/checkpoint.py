"""Model bundles and training states as safetensors files: no pickle, atomic writes, clear refusals.

A *bundle* holds several named networks in one file: tensor keys are prefixed by the network name
(``generator.``, ``phi.``, ``unet.``), and the header metadata holds the format tag, its version,
the JSON config of each network and free-form JSON metadata (metrics, provenance). A *training
state* (optimisers, RNG, step) is an arbitrary nested structure whose tensors go to safetensors and
whose other values go to JSON in the header, so resume restores everything without ``torch.load``.

Every write goes to a temporary file in the same folder, is fsync'ed and then renamed over the
target, so a kill (or a full disk) mid-write leaves the previous file intact.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

FORMAT = "elgan-bundle"
STATE_FORMAT = "elgan-train-state"
VERSION = 1
MAX_FILE_BYTES = 2 * 1024**3  # refuse to read anything larger: no bundle of this project comes near it


def _read_umask() -> int:
    mask = os.umask(0)  # the only way to read it; done once at import, before any thread exists
    os.umask(mask)
    return mask


_UMASK = _read_umask()


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, unreadable, foreign or does not match the network it should fill."""


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` so that readers see either the old file or the complete new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp's 0600 would make checkpoints unreadable to other users
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:  # a full disk (ENOSPC), quota, I/O error: say which file, and that nothing was lost
        Path(tmp).unlink(missing_ok=True)
        if exc.errno is None:
            raise
        raise OSError(exc.errno, f"{exc.strerror or exc} while writing {path}; the previous file, if any, "
                      "is unchanged") from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files (``.NAME.*.tmp``) that atomic writes of a killed process left in `folder`.

    They are never read (no loader looks at them), but each can be as large as a checkpoint, and a run
    resumed after many kills would pile them up. Call only while no other process writes to `folder`.
    """
    removed = []
    for tmp in Path(folder).glob(".*.tmp"):
        if tmp.is_file() and not tmp.is_symlink():
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def _config_json(cfg: Any) -> Any:
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return dataclasses.asdict(cfg)
    return cfg


def _tensor_dict(net: torch.nn.Module | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    sd = net.state_dict() if isinstance(net, torch.nn.Module) else net
    return dict(sd)


def save_bundle(path: str | os.PathLike, networks: Mapping[str, torch.nn.Module | Mapping[str, torch.Tensor]],
                configs: Mapping[str, Any] | None = None, metadata: Mapping[str, Any] | None = None,
                half: bool = False, keep_full: Iterable[str] = ()) -> None:
    """Save named networks (modules or state dicts) with their configs; `half` stores fp32 floats as fp16,
    except in the networks named in `keep_full` (small statistics that fp16 would round badly)."""
    keep = set(keep_full)
    tensors: dict[str, torch.Tensor] = {}
    for name, net in networks.items():
        if "." in name or not name:
            raise ValueError(f"network name must be non-empty and contain no '.', got {name!r}")
        for key, t in _tensor_dict(net).items():
            t = t.detach().to("cpu")
            if half and name not in keep and t.is_floating_point() and t.dtype == torch.float32:
                t = t.half()
            tensors[f"{name}.{key}"] = t.contiguous().clone()
    header = {
        "format": FORMAT,
        "version": str(VERSION),
        "networks": json.dumps(sorted(networks)),
        "configs": json.dumps({k: _config_json(v) for k, v in (configs or {}).items()}, sort_keys=True),
        "metadata": json.dumps(dict(metadata or {}), sort_keys=True, default=str),
    }
    atomic_write_bytes(path, st_save(tensors, metadata=header))


def _read(path: str | os.PathLike, expect_format: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file")
    if not path.is_file():
        raise CheckpointError(f"{path}: not a file")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{path}: the file is empty (0 bytes)")
    if size > MAX_FILE_BYTES:
        raise CheckpointError(f"{path}: {size} bytes is larger than the {MAX_FILE_BYTES}-byte limit")
    data = path.read_bytes()
    try:
        header_len = int.from_bytes(data[:8], "little")
        if header_len <= 0 or header_len > len(data) - 8:
            if data[:2] == b"PK" or (data[:1] == b"\x80" and data[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")):
                raise CheckpointError(f"{path}: this looks like a pickle / torch.save file; ELGAN Studio reads "
                                      "only safetensors files (no pickle is ever loaded)")
            raise CheckpointError(f"{path}: not a safetensors file, or truncated (header length "
                                  f"{header_len}, file length {len(data)})")
        header = json.loads(data[8:8 + header_len])
        meta = (header.get("__metadata__") if isinstance(header, dict) else None) or {}
        if not isinstance(meta, dict):
            raise CheckpointError(f"{path}: not a readable safetensors file (its metadata is not a mapping)")
        tensors = st_load(data)
    except CheckpointError:
        raise
    except (SafetensorError, ValueError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file (truncated or corrupt): {exc}") from exc
    fmt = meta.get("format")
    if fmt != expect_format:
        raise CheckpointError(f"{path}: a safetensors file, but not an {expect_format} "
                              f"(format tag {fmt!r}); was it written by another program?")
    try:
        version = int(meta.get("version", "0"))
    except (TypeError, ValueError):
        raise CheckpointError(f"{path}: unreadable format version {meta.get('version')!r}") from None
    if version > VERSION:
        raise CheckpointError(f"{path}: format version {version} is newer than this code ({VERSION}); "
                              "update ELGAN Studio")
    return tensors, meta


@dataclass
class Bundle:
    path: str
    tensors: dict[str, dict[str, torch.Tensor]]  # network name -> its state dict
    configs: dict[str, Any] = field(default_factory=dict)  # network or run name -> JSON config
    metadata: dict[str, Any] = field(default_factory=dict)  # metrics, provenance

    def has(self, name: str) -> bool:
        return name in self.tensors

    def state_dict(self, name: str) -> dict[str, torch.Tensor]:
        if name not in self.tensors:
            raise CheckpointError(f"{self.path}: holds no network {name!r} (it has: "
                                  f"{', '.join(sorted(self.tensors)) or 'none'})")
        return self.tensors[name]

    def config(self, name: str) -> dict[str, Any]:
        if name not in self.configs:
            raise CheckpointError(f"{self.path}: holds no config for {name!r}")
        return self.configs[name]


def _header_json(path: str | os.PathLike, meta: Mapping[str, Any], key: str, default: str, kind: type) -> Any:
    """One JSON field of the header, of the expected kind; CheckpointError if it is not (a corrupt or
    hand-made file must not surface as a TypeError deep inside the loader)."""
    try:
        value = json.loads(meta.get(key, default))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: the header's {key!r} field is not valid JSON: {exc}") from None
    if not isinstance(value, kind):
        raise CheckpointError(f"{path}: the header's {key!r} field should be a JSON {kind.__name__}, got "
                              f"{type(value).__name__}")
    return value


def load_bundle(path: str | os.PathLike, require: Iterable[str] = ()) -> Bundle:
    """Read a bundle; raise CheckpointError naming the problem if it is missing, foreign or incomplete."""
    flat, meta = _read(path, FORMAT)
    names = _header_json(path, meta, "networks", "[]", list)
    if not all(isinstance(n, str) for n in names):
        raise CheckpointError(f"{path}: the header's network names are not strings: {names!r:.200}")
    tensors: dict[str, dict[str, torch.Tensor]] = {n: {} for n in names}
    for key, t in flat.items():
        name, _, sub = key.partition(".")
        if name not in tensors:
            raise CheckpointError(f"{path}: tensor {key!r} belongs to no declared network {names}")
        tensors[name][sub] = t
    bundle = Bundle(str(path), tensors, _header_json(path, meta, "configs", "{}", dict),
                    _header_json(path, meta, "metadata", "{}", dict))
    missing = [n for n in require if n not in tensors]
    if missing:
        raise CheckpointError(f"{path}: missing network(s) {missing}; it holds {sorted(tensors)}")
    return bundle


def load_into(module: torch.nn.Module, state: Mapping[str, torch.Tensor], what: str = "network") -> None:
    """load_state_dict with a readable refusal: lists missing, unexpected and mis-shaped keys."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in sorted(set(own) & set(state)) if state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
        if shapes:
            parts.append(f"wrong shapes {shapes[:5]}{' ...' if len(shapes) > 5 else ''}")
        raise CheckpointError(f"{what} does not match the file: " + "; ".join(parts))
    module.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})


# ---- nested training states (optimisers, RNG, counters) -------------------------------------------

def _flatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = obj.detach().to("cpu").contiguous().clone()
        return {"__tensor__": key}
    if isinstance(obj, Mapping):
        items = [[_flatten(k, tensors), _flatten(v, tensors)] for k, v in obj.items()]
        return {"__dict__": items}
    if isinstance(obj, (list, tuple)):
        return {"__tuple__" if isinstance(obj, tuple) else "__list__": [_flatten(v, tensors) for v in obj]}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} in a training state")


def _unflatten(obj: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__dict__" in obj:
            return {_unflatten(k, tensors): _unflatten(v, tensors) for k, v in obj["__dict__"]}
        if "__tuple__" in obj:
            return tuple(_unflatten(v, tensors) for v in obj["__tuple__"])
        if "__list__" in obj:
            return [_unflatten(v, tensors) for v in obj["__list__"]]
    return obj


def save_state(path: str | os.PathLike, state: Mapping[str, Any]) -> None:
    """Atomically save a nested structure of tensors, numbers, strings, lists and dicts."""
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _flatten(dict(state), tensors)
    header = {"format": STATE_FORMAT, "version": str(VERSION), "skeleton": json.dumps(skeleton)}
    atomic_write_bytes(path, st_save(tensors, metadata=header))


def held_only(saved: dict[str, Any], trainable: list[bool]) -> dict[str, Any]:
    """An optimiser state written when optimisers held every parameter of their networks, frozen ones
    included (runs before the phase table): keep the entries of the trainable ones. `trainable` flags
    every parameter of the networks, in the optimiser's order. Any other state is returned unchanged."""
    group = saved["param_groups"][0]
    if len(saved["param_groups"]) != 1 or len(group["params"]) != len(trainable) or all(trainable):
        return saved  # the current layout, or a mismatch that load_state_dict will name
    ids = [pid for pid, keep in zip(group["params"], trainable, strict=True) if keep]
    return {"state": {new: saved["state"][old] for new, old in enumerate(ids) if old in saved["state"]},
            "param_groups": [{**group, "params": list(range(len(ids)))}]}


def load_state(path: str | os.PathLike) -> dict[str, Any]:
    tensors, meta = _read(path, STATE_FORMAT)
    try:
        return _unflatten(json.loads(meta["skeleton"]), tensors)
    except (KeyError, TypeError, ValueError) as exc:  # JSONDecodeError is a ValueError
        raise CheckpointError(f"{path}: training state is incomplete: {exc}") from exc
