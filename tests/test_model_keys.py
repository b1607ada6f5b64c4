"""The model selector's values are public keys, never server paths (no server needed, ~seconds on CPU).

A public Space sends the selector's values to every browser (the page's config, the API): they must not
reveal where the app lives on disk. The registry maps each key back to its file and refuses anything it did
not offer, with a message that names no server path.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from elgan.bundle import ModelBundle
from studio.registry import UNTRAINED, ModelError, ModelRegistry, label_of
from tests.test_studio import write_tiny_bundle

RUN = "00002-gan-synthetic-32-E"
PIPELINE = "00003-pipeline-synthetic-32-E"


@pytest.fixture()
def world(tmp_path: Path) -> tuple[ModelRegistry, Path, dict[str, Path]]:
    """Two shipped bundles, a GAN run's best checkpoint, a pipeline run's bundle, a command-line bundle
    elsewhere whose label clashes with a shipped one; returns (registry, tmp_path, expected key -> file)."""
    ck, runs = tmp_path / "checkpoints", tmp_path / "runs"
    files = {"default.safetensors": write_tiny_bundle(ck / "default.safetensors"),
             "horse.safetensors": write_tiny_bundle(ck / "horse.safetensors", with_unet=False),
             f"{RUN}/best.safetensors": write_tiny_bundle(runs / RUN / "best.safetensors"),
             f"{PIPELINE}/bundle.safetensors": write_tiny_bundle(runs / PIPELINE / "bundle.safetensors")}
    (runs / RUN / "config.json").write_text(json.dumps({"generator": {}}))
    write_tiny_bundle(runs / RUN / "checkpoint.safetensors")  # inside the runs root, but not a result
    extra = write_tiny_bundle(tmp_path / "elsewhere" / "checkpoints" / "default.safetensors")
    registry = ModelRegistry(ck, runs, extra=[extra])
    return registry, tmp_path, {"default.safetensors (2)": extra, **files}


def test_choices_are_public_keys_that_name_no_server_path(world) -> None:
    registry, tmp_path, expected = world
    choices = registry.choices()
    assert choices == ["default.safetensors (2)", "default.safetensors", "horse.safetensors",
                       f"{PIPELINE}/bundle.safetensors", f"{RUN}/best.safetensors", UNTRAINED]
    roots = [str(registry.checkpoints), str(registry.runs_root), str(tmp_path.resolve()), str(tmp_path)]
    for key in choices:
        assert not Path(key).is_absolute() and not key.startswith(("/", "\\", "~")), key
        assert not any(root in key for root in roots), key
    assert registry.default() == "default.safetensors (2)"  # the command line's bundle comes first
    assert registry.shipped() == ["default.safetensors", "horse.safetensors"]
    # the labels the user sees are what they always were (a label used to be computed from the path)
    for key, path in expected.items():
        if key != "default.safetensors (2)":  # the clash is why this one is numbered
            assert label_of(key) == label_of(str(path.resolve())) == key


def test_every_key_round_trips_to_a_loadable_model(world) -> None:
    registry, tmp_path, expected = world
    for key in registry.choices():
        model = registry.get(key)
        assert isinstance(model, ModelBundle) and registry.get(key) is model  # loaded once
        assert registry.key_of(key) == key
        card = registry.describe(key)
        assert str(tmp_path) not in card and str(registry.checkpoints) not in card
        if key != UNTRAINED:
            assert registry.path_of(key) == expected[key].resolve()
            # in-process callers may still name a listed bundle by its path: it is the same model
            assert registry.key_of(str(expected[key].resolve())) == key
            assert registry.get(str(expected[key].resolve())) is model
    assert registry.get(UNTRAINED).metadata["untrained"] is True
    assert registry.files() == [str(registry.path_of(k)) for k in registry.choices()[:-1]]  # server side only
    with pytest.raises(ModelError, match="not a file"):
        registry.path_of(UNTRAINED)


def test_keys_and_paths_not_offered_are_refused_without_a_path(world) -> None:
    registry, tmp_path, _ = world
    outside = write_tiny_bundle(tmp_path / "secret" / "x.safetensors")
    refused = ["nope.safetensors", f"{RUN}/checkpoint.safetensors", f"{RUN}/nope.safetensors",
               "../secret/x.safetensors", "../../etc/passwd", str(outside), str(outside.resolve()), "/etc/passwd",
               str(tmp_path / "runs" / RUN / "checkpoint.safetensors"),  # under the runs root, not a result
               str(tmp_path / "checkpoints" / ".." / "secret" / "x.safetensors"), "default.safetensors\0", "", None]
    for value in refused:
        for call in (registry.get, registry.key_of, registry.path_of, registry.describe):
            with pytest.raises(ModelError, match="not a selectable model") as caught:
                call(value)  # type: ignore[arg-type]
            message = str(caught.value)
            assert str(tmp_path) not in message and str(tmp_path.resolve()) not in message, message
            assert "/etc" not in message and "Traceback" not in message, message
    assert UNTRAINED in registry.choices() and all(k in registry.choices() for k in registry.shipped())


def test_a_new_run_result_gets_a_key_without_a_restart(world) -> None:
    registry, tmp_path, _ = world
    fresh = "00004-pipeline-synthetic-32-E"
    with pytest.raises(ModelError):
        registry.get(f"{fresh}/bundle.safetensors")
    write_tiny_bundle(tmp_path / "runs" / fresh / "bundle.safetensors")
    assert registry.get(f"{fresh}/bundle.safetensors").unet is not None  # listed anew on a miss
    assert registry.choices()[3] == f"{fresh}/bundle.safetensors"  # runs newest first
