"""The app's models: discovered on disk, loaded once, shared read-only by every request.

Why a registry keyed by path rather than a model held in ``gr.State``: a bundle is megabytes of
weights, and Gradio copies state per browser session; a path is a few bytes. Handlers receive the
selected path and look the networks up here. Loading is the only write, and it happens under a lock,
so two sessions selecting the same new bundle load it once. Networks are in eval mode and only ever
run under ``torch.inference_mode``, which makes concurrent forwards safe.

Only files the app itself lists can be loaded (bundles in the checkpoints folder and results of runs
under the runs root): a path sent by a client is checked against that list, so no request can make the
server read an arbitrary file.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Hashable
from pathlib import Path
from typing import Any, Generic, TypeVar

import torch

from elgan.bundle import ModelBundle, load_model_bundle
from elgan.checkpoint import CheckpointError
from elgan.config import GeneratorConfig, PerturbConfig, PhiConfig, UNetConfig
from elgan.nets.generator import LayeredGenerator
from elgan.nets.phi import LatentTransform
from elgan.nets.unet import UNet

from .access import data_label, scrub_paths

UNTRAINED = "untrained"  # registry key of the freshly initialised fallback model (not a file)
DEFAULT_NAME = "default.safetensors"  # preferred bundle in the checkpoints folder
RESULT_NAMES = ("bundle.safetensors", "best.safetensors")  # a run's loadable result, in order of preference

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class StudioError(ValueError):
    """A request the app cannot serve; the message is written for the person using the app."""


class ModelError(StudioError):
    """A model cannot be selected: unknown path, or the bundle does not load (the message says why)."""


class LRU(Generic[K, V]):
    """A small thread-safe least-recently-used map (functools.lru_cache cannot key on tensors' owners)."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._data: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: K) -> V | None:
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                self.hits += 1
                return self._data[key]
            self.misses += 1
            return None

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)


def untrained_bundle(size: int = 64, width: int = 8, device: str | torch.device = "cpu") -> ModelBundle:
    """A freshly initialised small model so that every tab works before any bundle exists.

    Seeded inside a forked RNG: the same picture at every start, and the caller's random stream untouched.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        perturb = PerturbConfig()
        generator = LayeredGenerator(GeneratorConfig(size=size, width=width)).to(device).eval()
        phi = LatentTransform(PhiConfig(eps_dim=perturb.eps_dim)).to(device).eval()
        unet = UNet(UNetConfig(base=8, depth=4), input_size=size).to(device).eval()
    return ModelBundle(generator=generator, phi=phi, perturb=perturb, unet=unet, discriminator=None,
                       metadata={"untrained": True}, path=UNTRAINED, unet_size=size)


def _run_result(run: Path) -> Path | None:
    """The loadable model of a run folder: its bundle, else a GAN run's best checkpoint."""
    if (run / "bundle.safetensors").is_file():
        return run / "bundle.safetensors"
    best = run / "best.safetensors"
    if not best.is_file():
        return None
    try:  # a U-Net run's best.safetensors holds no generator: only GAN runs count
        config = json.loads((run / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return best if isinstance(config, dict) and "generator" in config else None


def label_of(key: str) -> str:
    """What the selector shows: 'default.safetensors', or 'run-name/bundle.safetensors' for run results."""
    if key == UNTRAINED:
        return "untrained demo model (random weights)"
    p = Path(key)
    return p.name if p.parent.name == "checkpoints" else f"{p.parent.name}/{p.name}"


def trained_on(metadata: dict[str, Any]) -> str:
    """What a model learnt from, in plain words: the bundle's own ``about.trained_on`` (written by
    ``python -m training.domain_stats --trained-on``), else read off its data spec."""
    about = metadata.get("about")
    if isinstance(about, dict) and isinstance(about.get("trained_on"), str) and about["trained_on"].strip():
        return about["trained_on"].strip()
    spec = metadata.get("data")
    if not isinstance(spec, str) or not spec:
        return "unknown images (the bundle does not say)"
    kind, _, _ = spec.partition(":")
    if kind == "synthetic":
        return "synthetic scenes (one textured object on a textured background)"
    words = {"folder": "the photos in the folder", "cub": "CUB-200 bird photos in", "lsun": "LSUN photos in"}
    return f"{words.get(kind, 'images in')} {data_label(spec).partition(':')[2] or spec}"


def discover_models(checkpoints: Path, runs_root: Path | None = None) -> list[Path]:
    """Loadable bundles: checkpoints/*.safetensors (default.safetensors first), then runs' results.

    Runs are listed newest first (by folder name: the studio numbers its runs), so a fresh result is
    near the top of the selector.
    """
    found: list[Path] = []
    if checkpoints.is_dir():
        files = sorted(p for p in checkpoints.glob("*.safetensors") if p.is_file())
        found += sorted(files, key=lambda p: p.name != DEFAULT_NAME)
    if runs_root is not None and runs_root.is_dir():
        for run in sorted((p for p in runs_root.iterdir() if p.is_dir() and not p.name.startswith(".")),
                          reverse=True):
            result = _run_result(run)
            if result is not None:
                found.append(result)
    return [p.resolve() for p in found]


class ModelRegistry:
    """Bundles by path, loaded once; plus the caches of rendered layers (per model, LRU)."""

    def __init__(self, checkpoints: str | Path = "checkpoints", runs_root: str | Path | None = "runs",
                 device: str | torch.device = "cpu", cache_size: int = 128,
                 extra: list[str | Path] | None = None) -> None:
        self.checkpoints = Path(checkpoints).resolve()
        self.extra = [Path(p).resolve() for p in extra or []]  # given on the command line: listed first
        self.runs_root = Path(runs_root).resolve() if runs_root is not None else None
        self.device = torch.device(device)
        self._models: dict[str, ModelBundle] = {}
        self._lock = threading.Lock()
        # background per latent code, and (foreground, mask) per (latent code, c): see render.py
        self.backgrounds: LRU[Hashable, torch.Tensor] = LRU(cache_size)
        self.foregrounds: LRU[Hashable, tuple[torch.Tensor, torch.Tensor]] = LRU(cache_size)

    def choices(self) -> list[str]:
        """Every selectable model (paths as strings), the untrained fallback last."""
        found = discover_models(self.checkpoints, self.runs_root)
        return [str(p) for p in self.extra + [p for p in found if p not in self.extra]] + [UNTRAINED]

    def shipped(self) -> list[str]:
        """The bundles of the checkpoints folder (the models that come with the project)."""
        return [str(p) for p in discover_models(self.checkpoints, None)]

    def default(self) -> str:
        """The command line's bundle, else the first found (default.safetensors first), else the fallback."""
        return self.choices()[0]

    def _allowed(self, key: str) -> bool:
        if key == UNTRAINED or key in self._models:
            return True
        path = Path(key).resolve()
        if path in self.extra:
            return True
        roots = [self.checkpoints] + ([self.runs_root] if self.runs_root is not None else [])
        return path.suffix == ".safetensors" and path.is_file() and \
            any(path.is_relative_to(root) for root in roots)

    def get(self, key: str) -> ModelBundle:
        """The loaded bundle for `key` (a path from :meth:`choices`, or UNTRAINED); ModelError if not."""
        model = self._models.get(key)  # dict reads are atomic: the common path takes no lock
        if model is not None:
            return model
        if not isinstance(key, str) or not self._allowed(key):
            shown = label_of(key) if isinstance(key, str) else repr(key)  # no server path in a message
            raise ModelError(f"not a selectable model: {shown!r} (bundles live in {self.checkpoints.name}/"
                             + (f" or under {self.runs_root.name}/" if self.runs_root else "") + ")")
        with self._lock:
            if key not in self._models:
                try:
                    model = untrained_bundle(device=self.device) if key == UNTRAINED \
                        else load_model_bundle(key, self.device)
                except (CheckpointError, OSError, ValueError) as exc:
                    detail = str(exc).replace(f"{key}: ", "")  # the loader names the file too: say it once
                    detail = scrub_paths(detail.replace(key, label_of(key)), [self.checkpoints.parent])
                    raise ModelError(f"cannot load {label_of(key)}: {detail}") from exc
                self._models[key] = model
            return self._models[key]

    def loaded(self) -> list[ModelBundle]:
        """The models loaded so far (a snapshot)."""
        return list(self._models.values())

    def describe(self, key: str) -> str:
        """A short Markdown card of the model: what it is, its size, its scores."""
        m = self.get(key)
        label = "untrained demo model" if key == UNTRAINED else label_of(key)
        cfg = m.generator.cfg
        about = m.metadata.get("about")
        use = about.get("use") if isinstance(about, dict) and isinstance(about.get("use"), str) else ""
        plain = f"**{label}** — trained on {trained_on(m.metadata)}." if key != UNTRAINED \
            else f"**{label}** — random weights, trained on nothing."
        parts = [plain + (f" {use}" if use else "")
                 + (" It can cut objects out (it has a segmenter)." if m.unet is not None and not use else "")
                 + (" No segmenter: Segment needs a model trained with the whole pipeline."
                    if m.unet is None else "")
                 + f"\n<span class='notation'>{cfg.size} px, width {cfg.width}, {cfg.n_categories} categories "
                 f"in {cfg.n_super} super-categories; moves: "
                 f"{', '.join(m.perturb.eps_names) if m.phi is not None else 'none (no Phi)'}"
                 f"; U-Net: {'yes' if m.unet is not None else 'no'}"
                 f"{'' if m.domain is None else '; checks uploads against its training images'}</span>"]
        if key == UNTRAINED:
            parts.append("No trained bundle was found (checkpoints/*.safetensors), so this is a **freshly "
                         "initialised, untrained** model: every tab works, but its pictures are noise and its "
                         "masks meaningless. Train one in the Train tab, or put a bundle at "
                         "checkpoints/default.safetensors.")
        metrics: Any = m.metadata.get("metrics")
        if isinstance(metrics, dict) and {"acc", "iou", "miou"} <= set(metrics):
            parts.append(f"Its masks on {data_label(metrics.get('data', '?'))} [{metrics.get('split', '?')}]: "
                         f"{100 * metrics['acc']:.1f}% of pixels right (ACC), overlap with the true masks "
                         f"{100 * metrics['iou']:.1f}% (IoU; mIoU {100 * metrics['miou']:.1f})")
        return "\n\n".join(parts)
