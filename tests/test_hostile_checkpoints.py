"""Broken checkpoints: every one is refused with a message that says what is wrong, and the model that was
selected stays loaded and serving -- through the studio's registry and through the app's model selector.
"""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from elgan import checkpoint as ckpt
from elgan.bundle import load_model_bundle
from elgan.config import GeneratorConfig, PhiConfig, UNetConfig
from elgan.nets.generator import LayeredGenerator
from elgan.nets.phi import LatentTransform
from elgan.nets.unet import UNet
from studio import render
from studio.registry import ModelError, ModelRegistry
from tests.test_studio import write_tiny_bundle


def _with_header(good: Path, path: Path, **fields: str) -> Path:
    """A copy of a good bundle whose header metadata has `fields` replaced (a hand-edited or damaged file)."""
    data = good.read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    header["__metadata__"] = {**header["__metadata__"], **fields}
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + data[8 + n:])
    return path


def _wrong_shapes(path: Path) -> Path:
    """Weights of a width-8 generator under a config that says width 4."""
    wide = LayeredGenerator(GeneratorConfig(size=32, width=8))
    ckpt.save_bundle(path, {"generator": wide, "phi": LatentTransform(PhiConfig())},
                     {"generator": GeneratorConfig(size=32, width=4), "phi": PhiConfig()})
    return path


def _missing_key(path: Path) -> Path:
    g = LayeredGenerator(GeneratorConfig(size=32, width=4))
    state = g.state_dict()
    state.pop(next(iter(state)))
    ckpt.save_bundle(path, {"generator": state}, {"generator": g.cfg})
    return path


def _unet_only(path: Path) -> Path:
    ckpt.save_bundle(path, {"unet": UNet(UNetConfig(base=4, depth=3))}, {"unet": UNetConfig(base=4, depth=3)})
    return path


def _no_phi_config(path: Path) -> Path:
    ckpt.save_bundle(path, {"generator": LayeredGenerator(GeneratorConfig(size=32, width=4)),
                            "phi": LatentTransform(PhiConfig())}, {"generator": GeneratorConfig(size=32, width=4)})
    return path


def _state_file(path: Path) -> Path:
    ckpt.save_state(path, {"step": 3, "w": torch.zeros(2)})
    return path


# file name -> (writer(good bundle, path) -> path, what the message must say)
BROKEN: dict[str, tuple[Callable[[Path, Path], Path], str]] = {
    "truncated": (lambda g, p: _write(p, g.read_bytes()[: g.stat().st_size // 2]), "truncated or corrupt"),
    "cut-in-header": (lambda g, p: _write(p, g.read_bytes()[:100]), "truncated"),
    "zero-byte": (lambda g, p: _write(p, b""), "empty"),
    "pickle": (lambda g, p: _write(p, pickle.dumps({"generator": {"w": [1.0, 2.0]}})), "pickle"),
    "torch-save": (lambda g, p: (torch.save({"w": torch.zeros(3)}, p), p)[1], "pickle"),
    "random": (lambda g, p: _write(p, os.urandom(5000)), "not a safetensors file"),
    "foreign-safetensors": (lambda g, p: (save_file({"x": torch.zeros(2)}, p), p)[1], "format tag"),
    "training-state": (lambda g, p: _state_file(p), "format tag"),
    "wrong-shapes": (lambda g, p: _wrong_shapes(p), "wrong shapes"),
    "missing-key": (lambda g, p: _missing_key(p), "missing keys"),
    "unet-only": (lambda g, p: _unet_only(p), "holds no generator"),
    "no-phi-config": (lambda g, p: _no_phi_config(p), "no config for 'phi'"),
    "networks-not-a-list": (lambda g, p: _with_header(g, p, networks="5"), "'networks' field"),
    "configs-not-json": (lambda g, p: _with_header(g, p, configs="{oops"), "not valid JSON"),
    "metadata-null": (lambda g, p: _with_header(g, p, metadata="null"), "'metadata' field"),
    "bad-version": (lambda g, p: _with_header(g, p, version="two"), "format version"),
    "newer-version": (lambda g, p: _with_header(g, p, version="99"), "newer than this code"),
    "absurd-config": (lambda g, p: _with_header(g, p, configs=json.dumps(
        {"generator": {"size": 32, "width": 4096}, "perturb": {}})), "width must be in"),
}


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.fixture()
def folder(tmp_path: Path) -> tuple[ModelRegistry, str, dict[str, str]]:
    """A checkpoints folder with a good default bundle and one broken file per BROKEN case (by public key)."""
    ck = tmp_path / "checkpoints"
    good = write_tiny_bundle(ck / "default.safetensors")
    broken = {name: make(good, ck / f"{name}.safetensors").name for name, (make, _) in BROKEN.items()}
    return ModelRegistry(ck, tmp_path / "runs"), good.name, broken


def test_every_broken_file_is_listed_but_refused_clearly(folder) -> None:
    registry, good, broken = folder
    model = registry.get(good)
    layers = render.render_layers(registry, good, 1, (0.0,) * 5, 3, {})
    assert set(broken.values()) <= set(registry.choices())  # the selector offers them: they are .safetensors
    for name, key in broken.items():
        path = str(registry.path_of(key))
        for _ in range(2):  # a failed load leaves nothing half-registered: the second try fails the same way
            with pytest.raises(ModelError, match=BROKEN[name][1]) as refused:
                registry.get(key)
            message = str(refused.value)
            assert message.startswith(f"cannot load {name}.safetensors:"), message
            assert message.count(path) == 0 and "Traceback" not in message
        assert registry.get(good) is model  # the previous model is still loaded, the very same object
    again = render.render_layers(registry, good, 1, (0.0,) * 5, 3, {})
    assert torch.equal(again.image, layers.image)


def test_loader_errors_are_checkpoint_errors(folder) -> None:
    """Below the registry: the library raises CheckpointError (never TypeError, KeyError, pickle...)."""
    registry, _, broken = folder
    for name, key in broken.items():
        with pytest.raises(ckpt.CheckpointError, match=BROKEN[name][1]):
            load_model_bundle(registry.path_of(key))


def test_size_limit_is_checked_before_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    good = write_tiny_bundle(tmp_path / "b.safetensors")
    assert ckpt.MAX_FILE_BYTES == 2 * 1024**3
    monkeypatch.setattr(ckpt, "MAX_FILE_BYTES", 1000)
    read = []
    monkeypatch.setattr(Path, "read_bytes", lambda self: read.append(self) or b"")
    with pytest.raises(ckpt.CheckpointError, match="larger than the 1000-byte limit"):
        ckpt.load_bundle(good)
    assert not read


def test_corrupt_training_state_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.safetensors"
    ckpt.save_state(path, {"step": 3, "nested": {"a": [torch.ones(2), 1]}})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 4])
    with pytest.raises(ckpt.CheckpointError, match="truncated or corrupt"):
        ckpt.load_state(path)
    _with_header(_state_ok(tmp_path / "ok.safetensors"), path, skeleton='{"__dict__": 5}')
    with pytest.raises(ckpt.CheckpointError, match="incomplete"):
        ckpt.load_state(path)


def _state_ok(path: Path) -> Path:
    ckpt.save_state(path, {"step": 1})
    return path


# ---- through the app's model selector ---------------------------------------------------------------

gradio_client = pytest.importorskip("gradio_client")

from tests._server import connect, raw_call, serve  # noqa: E402

EXPLORE = dict(seed=3, z0=0, z1=0, z2=0, z3=0, z4=0, c=12, tx=0, ty=0, rotation=0, scale=0, compare=False)
IN_APP = ["truncated", "zero-byte", "pickle", "random", "wrong-shapes", "unet-only", "networks-not-a-list"]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, dict[str, str]]]:
    root = tmp_path_factory.mktemp("ckpt-app")
    good = write_tiny_bundle(root / "checkpoints" / "default.safetensors")
    broken = {n: BROKEN[n][0](good, root / "checkpoints" / f"{n}.safetensors").name for n in IN_APP}  # keys
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    url, demo = serve(root)
    try:
        yield url, good.name, broken
    finally:
        demo.close()
        torch.set_num_threads(before)


def _value(x: Any) -> Any:
    return x.get("value") if isinstance(x, dict) and x.get("__type__") == "update" else x


def test_selector_shows_the_error_and_keeps_the_model(served) -> None:
    url, good, broken = served
    client = connect(url)
    reference = client.predict(**EXPLORE, api_name="/explore")[3]
    for name, key in broken.items():
        done, messages = raw_call(url, "select_model", [key, None, 0])
        assert done["success"], done
        dropdown = _value(done["output"]["data"][1])  # [0] is the session's gr.State: never sent to clients
        assert dropdown == good, name  # the selector snaps back to the model still loaded
        warnings = [m["log"] for m in messages if m.get("msg") == "log" and m.get("level") == "warning"]
        assert any(f"cannot load {name}.safetensors" in w and BROKEN[name][1] in w for w in warnings), warnings
        selected, *_ = client.predict(key, api_name="/select_model")
        assert _value(selected) == good
    after = client.predict(**EXPLORE, api_name="/explore")[3]
    import numpy as np
    from PIL import Image

    assert np.array_equal(np.asarray(Image.open(after)), np.asarray(Image.open(reference)))  # same model
