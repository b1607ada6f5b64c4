"""The app's models: discovered on disk, loaded once, shared read-only by every request.

Why a registry keyed by name rather than a model held in ``gr.State``: a bundle is megabytes of
weights, and Gradio copies state per browser session; a key is a few bytes. Handlers receive the
selected key and look the networks up here. Loading is the only write, and it happens under a lock,
so two sessions selecting the same new bundle load it once. Networks are in eval mode and only ever
run under ``torch.inference_mode``, which makes concurrent forwards safe.

The keys are public: they reach the browser (the selector's values, the API), so they name no server
path. A bundle of the checkpoints folder is its file name (``default.safetensors``), a run's result
``<run>/<file>`` (``00003-gan-synthetic-64-E/best.safetensors``), the untrained fallback ``untrained``;
the registry alone maps a key to its file. Only files the app itself lists can be loaded (bundles in the
checkpoints folder, results of runs under the runs root, the command line's bundle): a key it did not
offer is refused, so no request can make the server read an arbitrary file. For callers in-process
(tests, benchmarks) the absolute path of a listed bundle is accepted as another name of its key.
"""

from __future__ import annotations

import functools
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, Generic, ParamSpec, TypeVar

import torch

from elgan.bundle import ModelBundle, load_model_bundle
from elgan.checkpoint import CheckpointError
from elgan.config import GeneratorConfig, PerturbConfig, PhiConfig, UNetConfig
from elgan.equivariance import EditError
from elgan.invert import InversionError
from elgan.nets.generator import LayeredGenerator
from elgan.nets.phi import LatentTransform
from elgan.nets.unet import UNet

from .access import data_label, scrub_paths

UNTRAINED = "untrained"  # registry key of the freshly initialised fallback model (not a file)
DEFAULT_NAME = "default.safetensors"  # preferred bundle in the checkpoints folder
RESULT_NAMES = ("bundle.safetensors", "best.safetensors")  # a run's loadable result, in order of preference

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
P = ParamSpec("P")
R = TypeVar("R")


class StudioError(ValueError):
    """A request the app cannot serve; the message is written for the person using the app."""


class ModelError(StudioError):
    """A model cannot be selected: a key not offered, or the bundle does not load (the message says why)."""


# The library's refusals of a request: ValueErrors whose messages are written for the person who asked.
LIBRARY_REFUSALS: tuple[type[ValueError], ...] = (EditError, InversionError)


def refusing(fn: Callable[P, R]) -> Callable[P, R]:
    """`fn` (a library call) with the library's refusals re-raised as StudioError, message unchanged: the
    handlers show a StudioError's message to the visitor and let anything else surface as an internal
    error, and the library knows nothing of the app."""
    @functools.wraps(fn)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except LIBRARY_REFUSALS as exc:
            raise StudioError(str(exc)) from exc
    return call


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
    """What the selector shows: 'default.safetensors', or 'run-name/bundle.safetensors' for run results.

    A public key is its own label; an absolute path (a bundle's file) is labelled as its key would be.
    """
    if key == UNTRAINED:
        return "untrained demo model (random weights)"
    p = Path(key)
    if not p.is_absolute():
        return key
    return p.name if p.parent.name in ("", "checkpoints") else f"{p.parent.name}/{p.name}"


def _shown(value: object) -> str:
    """A refused model as a message may name it: a key as sent, anything path-like by its last part only."""
    if not isinstance(value, str):
        return repr(value)[:80]
    parts = value.replace("\\", "/").split("/")
    keylike = len(parts) <= 2 and all(p and p not in (".", "..") and not p.startswith("~") for p in parts)
    return (value if keylike else parts[-1])[:80]


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
    """Bundles by public key, loaded once; plus the caches of rendered layers (per model, LRU)."""

    def __init__(self, checkpoints: str | Path = "checkpoints", runs_root: str | Path | None = "runs",
                 device: str | torch.device = "cpu", cache_size: int = 128,
                 extra: list[str | Path] | None = None) -> None:
        self.checkpoints = Path(checkpoints).resolve()
        self.extra = [Path(p).resolve() for p in extra or []]  # given on the command line: listed first
        self.runs_root = Path(runs_root).resolve() if runs_root is not None else None
        self.device = torch.device(device)
        self._models: dict[str, ModelBundle] = {}  # by key
        self._offered: dict[str, Path] = {}  # key -> file, as last listed (see _discover)
        self._lock = threading.Lock()
        # background per latent code, and (foreground, mask) per (latent code, c): see render.py
        self.backgrounds: LRU[Hashable, torch.Tensor] = LRU(cache_size)
        self.foregrounds: LRU[Hashable, tuple[torch.Tensor, torch.Tensor]] = LRU(cache_size)

    def _key_for(self, path: Path) -> str:
        """A bundle's public key: its file name in the checkpoints folder, '<run>/<file>' for a run's result."""
        if path.parent == self.checkpoints:
            return path.name
        if self.runs_root is not None and path.parent.parent == self.runs_root:
            return f"{path.parent.name}/{path.name}"
        return label_of(str(path))  # a command-line bundle elsewhere: named as the selector always showed it

    def _discover(self) -> dict[str, Path]:
        """Every offered bundle by key, in the selector's order (the command line's first); remembered."""
        found = discover_models(self.checkpoints, self.runs_root)
        keys = {p: self._key_for(p) for p in found}  # unique: names in one folder, distinct run folders
        taken = set(keys.values()) | {UNTRAINED}
        offered: dict[str, Path] = {}
        for path in dict.fromkeys(self.extra):
            key = keys.get(path)
            if key is None:  # outside the folders: its name may clash with a listed one, so number it
                key = base = self._key_for(path)
                n = 1
                while key in taken:
                    n += 1
                    key = f"{base} ({n})"
                taken.add(key)
            offered[key] = path
        for path in found:
            offered.setdefault(keys[path], path)
        self._offered = offered  # replaced whole: readers in other threads see the old map or the new one
        return offered

    def choices(self) -> list[str]:
        """Every selectable model (public keys, no server path), the untrained fallback last."""
        return [*self._discover(), UNTRAINED]

    def files(self) -> list[str]:
        """The files of the offered bundles, for the server's own use (a U-Net run's GAN); never sent out."""
        return [str(p) for p in self._discover().values()]

    def shipped(self) -> list[str]:
        """The keys of the checkpoints folder's bundles (the models that come with the project)."""
        return [self._key_for(p) for p in discover_models(self.checkpoints, None)]

    def default(self) -> str:
        """The command line's bundle, else the first found (default.safetensors first), else the fallback."""
        return self.choices()[0]

    def _lookup(self, value: object) -> tuple[str, Path | None]:
        """(key, file) of an offered model named by its key or by its file's absolute path; else ModelError."""
        if value == UNTRAINED:
            return UNTRAINED, None
        if isinstance(value, str):
            try:  # a path only counts if it is one the registry listed (compared resolved, as listed)
                path = Path(value).resolve() if Path(value).is_absolute() else None
            except (OSError, ValueError, RuntimeError):  # a NUL byte, a symlink loop
                path = None
            for offered in (self._offered, self._discover()):  # the remembered list, then the disk anew
                if value in offered:
                    return value, offered[value]
                for key, listed in offered.items() if path is not None else ():
                    if listed == path:
                        return key, listed
        raise ModelError(f"not a selectable model: {_shown(value)!r} (bundles live in {self.checkpoints.name}/"
                         + (f" or under {self.runs_root.name}/" if self.runs_root else "") + ")")

    def key_of(self, value: str) -> str:
        """The public key of `value`: a key this registry offers, or the absolute path of a bundle it lists.

        Anything else is refused (ModelError) with a message that names no server path.
        """
        return value if isinstance(value, str) and value in self._models else self._lookup(value)[0]

    def path_of(self, key: str) -> Path:
        """The file of an offered bundle (for the server only: training reads it); ModelError if none."""
        _, path = self._lookup(key)
        if path is None:
            raise ModelError("the untrained demo model is not a file")
        return path

    def get(self, key: str) -> ModelBundle:
        """The loaded bundle for `key` (a key from :meth:`choices`, or UNTRAINED); ModelError if not."""
        model = self._models.get(key) if isinstance(key, str) else None  # dict reads are atomic: no lock
        if model is not None:
            return model
        key, path = self._lookup(key)
        with self._lock:
            if key not in self._models:
                try:
                    model = untrained_bundle(device=self.device) if path is None \
                        else load_model_bundle(str(path), self.device)
                except (CheckpointError, OSError, ValueError) as exc:
                    detail = str(exc).replace(f"{path}: ", "")  # the loader names the file too: say it once
                    detail = scrub_paths(detail.replace(str(path), key), [self.checkpoints.parent])
                    raise ModelError(f"cannot load {key}: {detail}") from exc
                self._models[key] = model
            return self._models[key]

    def loaded(self) -> list[ModelBundle]:
        """The models loaded so far (a snapshot)."""
        return list(self._models.values())

    def describe(self, key: str) -> str:
        """A short Markdown card of the model: what it is, its size, its scores."""
        key = self.key_of(key)
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
        equi = equivariance_line(m.metadata.get("equivariance"))
        if equi:
            parts.append(equi)
        return "\n\n".join(parts)


def equivariance_line(record: Any) -> str:
    """What the direction sliders do on this model, from ``python -m training.equivariance --write``: the
    share of the true move the latent walk makes, in plain words, with the ratios as notation."""
    if not isinstance(record, dict) or not isinstance(record.get("directions"), dict):
        return ""
    dirs = {k: v for k, v in record["directions"].items() if isinstance(v, dict) and "ratio" in v}
    if not dirs:
        return ""
    worst = max(float(v["ratio"]) for v in dirs.values())
    verdict = ("The direction sliders move the object: its latent walk makes most of the true move"
               if record.get("target_met") else
               "The direction sliders barely move the object on this model: its latent walk was not learned"
               if worst > 0.9 else "The direction sliders move the object only in part")
    order = PerturbConfig().eps_names  # every direction, in the order of eps's dimensions
    names = sorted(dirs, key=lambda k: order.index(k) if k in order else len(order))
    ratios = ", ".join(f"{k} {float(dirs[k]['ratio']):.2f}" for k in names)
    return (f"{verdict}. <span class='notation'>walk vs true move at eps = +1, {record.get('seeds', '?')} "
            f"seeds (0 = exact, 1 = no move): {ratios}</span>")
