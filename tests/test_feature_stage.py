"""The pipeline's features stage: one RotNet per key in a cache that pipeline runs share (tiny sizes, CPU)."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp

from elgan.config import from_dict, replace, to_dict
from elgan.pipeline import PipelineConfig, pipeline_config, run_pipeline
from elgan.train import feature_stage, instruments
from elgan.train.feature_stage import FeatureCacheError, check_entry, key_fields, key_of, run_stage

SMALL = dict(gan_iters=2, unet_steps=2, rotnet_iters=3, fd_samples=16, eval_limit=8, val_size=8, threads=1)


def tiny(out: Path, **over: Any) -> PipelineConfig:
    return pipeline_config("tiny", out=str(out), **{**SMALL, **over})


@pytest.fixture
def trainings(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How many RotNets the features stage and the GAN trainer train (the GAN should train none)."""
    counts = {"stage": 0, "gan": 0}

    def counted(where: str, real_fit: Any) -> Any:
        def fit(*args: Any, **kwargs: Any) -> Any:
            counts[where] += 1
            return real_fit(*args, **kwargs)
        return fit

    monkeypatch.setattr(feature_stage, "fit_rotnet", counted("stage", feature_stage.fit_rotnet))
    monkeypatch.setattr(instruments, "fit_rotnet", counted("gan", instruments.fit_rotnet))
    monkeypatch.delenv(feature_stage.CACHE_ENV, raising=False)
    return counts


def _record(run: Path) -> dict[str, Any]:
    return json.loads((run / "features" / "DONE").read_text())


def test_two_runs_on_the_same_data_share_one_rotnet(tmp_path: Path, trainings: dict[str, int]) -> None:
    lines: list[str] = []
    # config E (eq. (8)) and config D with FD-RotNet: other networks, the same RotNet
    run_pipeline(tiny(tmp_path / "E", ablation="E"), progress=False, log=lines.append)
    first = _record(tmp_path / "E")
    assert first["status"] == "miss" and trainings == {"stage": 1, "gan": 0}
    path = Path(first["path"])
    assert path.parent == (tmp_path / "feature_cache").resolve() and path.exists()
    mtime = path.stat().st_mtime_ns
    run_pipeline(tiny(tmp_path / "D", ablation="D", fd_net="rotnet"), progress=False, log=lines.append)
    second = _record(tmp_path / "D")
    assert second["status"] == "hit" and second["key"] == first["key"] and second["path"] == first["path"]
    assert trainings == {"stage": 1, "gan": 0} and path.stat().st_mtime_ns == mtime
    for run in ("E", "D"):  # the GAN stage was handed the file and trained none of its own
        assert json.loads((tmp_path / run / "gan" / "config.json").read_text())["rotnet"] == str(path)
        assert json.loads((tmp_path / run / "config.json").read_text())["gan"]["rotnet"] == ""  # as configured
        assert not (tmp_path / run / "gan" / "rotnet.safetensors").exists()
    assert any(line.startswith("[features] RotNet cache miss") for line in lines)
    assert any(line.startswith("[features] RotNet cache hit") and first["key"][:16] in line for line in lines)
    assert any(line.startswith("wall time: features") for line in lines)
    meta = json.loads(path.with_name(path.stem + ".json").read_text())  # what it was trained on, and how
    assert meta["feature_key"] == first["key"] and meta["trained_on"]["iters"] == 3 and meta["images"] > 0
    # a resumed run keeps its record while the file is intact
    lines.clear()
    run_pipeline(tiny(tmp_path / "D", ablation="D", fd_net="rotnet"), resume=True, progress=False, log=lines.append)
    assert "[features] (done earlier) RotNet cache hit" in lines[0] and trainings["stage"] == 1


def test_the_key_follows_what_shapes_the_weights(tmp_path: Path) -> None:
    cpu = torch.device("cpu")

    def key(**over: Any) -> str:
        return key_of(key_fields(tiny(tmp_path / "k", **over).gan, cpu))

    base = key()
    assert base == key(ablation="D", fd_net="rotnet") == key(gan_width=8, gan_iters=50, unet_steps=7)  # GAN only
    others = [key(rotnet_iters=4), key(rotnet_iters=0), key(seed=1), key(size=64)]
    assert len({base, *others}) == 1 + len(others)
    assert key_of(key_fields(tiny(tmp_path / "k").gan, torch.device("cuda"))) != base  # GPUs round otherwise
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.png").write_bytes(b"one")
    folder = key(data="folder:" + str(photos))
    assert folder != base and folder == key(data="folder:" + str(photos / ".." / "photos"))  # the same folder
    (photos / "b.png").write_bytes(b"two")  # the data changed: another key
    assert key(data="folder:" + str(photos)) != folder


def test_configs_that_need_no_rotnet_skip_the_stage(tmp_path: Path, trainings: dict[str, int]) -> None:
    for over, why in (({"perceptual": "effnet"}, "no RotNet needed"),
                      ({"ablation": "D"}, "no equivariance loss"),  # fd_net lite0 by default
                      ({"perceptual": "effnet", "fd_net": "lite0"}, "perceptual net effnet")):
        record = run_stage(tiny(tmp_path / "s", **over).gan, tmp_path / "s", "", None, False)
        assert record["status"] == "skipped" and why in record["reason"]
    given = replace(tiny(tmp_path / "s").gan, rotnet="/my/rotnet.safetensors")
    assert "/my/rotnet.safetensors" in run_stage(given, tmp_path / "s", "", None, False)["reason"]
    lines: list[str] = []
    run_pipeline(tiny(tmp_path / "effnet", perceptual="effnet"), progress=False, log=lines.append)
    assert _record(tmp_path / "effnet")["status"] == "skipped" and lines[0].startswith("[features] skipped: ")
    assert trainings == {"stage": 0, "gan": 0} and not (tmp_path / "feature_cache").exists()


def test_a_damaged_or_foreign_entry_is_never_used(tmp_path: Path, trainings: dict[str, int]) -> None:
    gan = tiny(tmp_path / "r").gan
    record = run_stage(gan, tmp_path / "r", "", None, False)
    path, key = Path(record["path"]), record["key"]
    assert check_entry(path, key) is None
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF  # one flipped byte in the weights: safetensors reads it without complaint
    path.write_bytes(bytes(data))
    assert "digest" in check_entry(path, key)
    lines: list[str] = []
    again = run_stage(gan, tmp_path / "r", "", None, False, log=lines.append)
    assert again["status"] == "miss" and "digest" in again["rebuilt"] and trainings["stage"] == 2
    assert check_entry(path, key) is None and path.with_name(path.name + ".rejected").exists()
    assert "not usable" in lines[0]
    path.write_bytes(path.read_bytes()[:100])  # truncated
    assert check_entry(path, key).startswith("unreadable")
    other = run_stage(replace(gan, rotnet_iters=4), tmp_path / "r", "", None, False)
    Path(other["path"]).replace(path)  # another key's file under this key's name
    assert "another key" in check_entry(path, key)
    assert run_stage(gan, tmp_path / "r", "", None, False)["status"] == "miss" and trainings["stage"] == 4


def test_racing_runs_train_one_rotnet(tmp_path: Path, trainings: dict[str, int],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("fcntl")
    slow = feature_stage.fit_rotnet

    def fit(*args: Any, **kwargs: Any) -> Any:
        time.sleep(0.5)  # the second run arrives while the first trains
        return slow(*args, **kwargs)

    monkeypatch.setattr(feature_stage, "fit_rotnet", fit)
    records: list[dict[str, Any]] = []
    gan = tiny(tmp_path / "r").gan
    cache = str(tmp_path / "c")
    workers = [threading.Thread(target=lambda i=i: records.append(run_stage(gan, tmp_path / f"r{i}", cache, None, False,
                                                                            log=lambda s: None)))
               for i in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert sorted(r["status"] for r in records) == ["hit", "miss"] and trainings["stage"] == 1
    assert check_entry(Path(records[0]["path"]), records[0]["key"]) is None


def test_a_run_folder_from_before_the_stage_resumes(tmp_path: Path, trainings: dict[str, int]) -> None:
    """Its GAN stage began with a RotNet of its own (in gan/): in progress, it keeps that one; done, none is
    trained. Its saved config (without the feature_cache knob) is read as it was."""
    from elgan.train.gan_trainer import train_gan

    run = tmp_path / "old"
    saved = {k: v for k, v in to_dict(tiny(run)).items() if k != "feature_cache"}
    run.mkdir()
    (run / "config.json").write_text(json.dumps(saved))
    cfg = from_dict(PipelineConfig, saved)
    train_gan(replace(cfg.gan, iters=1), run / "gan", progress=False)  # the old pipeline, stopped in its GAN stage
    own = (run / "gan" / "rotnet.safetensors").read_bytes()
    assert trainings == {"stage": 0, "gan": 1}
    lines: list[str] = []
    run_pipeline(cfg, run, resume=True, progress=False, log=lines.append)
    assert _record(run)["status"] == "skipped" and "began before" in _record(run)["reason"]
    assert trainings == {"stage": 0, "gan": 1} and (run / "gan" / "rotnet.safetensors").read_bytes() == own
    assert json.loads((run / "gan" / "config.json").read_text())["rotnet"] == ""
    assert json.loads((run / "gan" / "DONE").read_text())["steps"] == 2
    # a finished old run (no features marker) resumes without training anything
    (run / "features" / "DONE").unlink()
    run_pipeline(cfg, run, resume=True, progress=False, log=lines.append)
    assert trainings == {"stage": 0, "gan": 1} and _record(run)["status"] == "skipped"
    assert not (tmp_path / "feature_cache").exists()


def test_a_resumed_run_whose_file_is_gone(tmp_path: Path, trainings: dict[str, int]) -> None:
    """Before its GAN began: the stage runs again. With its GAN under way: the file is rebuilt where the GAN
    expects it, and a cache that moved is refused with a message rather than handed to the GAN."""
    run = tmp_path / "r"
    cfg = tiny(run)
    record = run_stage(cfg.gan, run, "", None, False)
    Path(record["path"]).unlink()
    assert run_stage(cfg.gan, run, "", record, False)["status"] == "miss" and trainings["stage"] == 2
    (run / "gan").mkdir(parents=True)
    Path(record["path"]).unlink()
    again = run_stage(cfg.gan, run, "", record, False)
    assert again["status"] == "miss" and again["path"] == record["path"] and trainings["stage"] == 3
    with pytest.raises(FeatureCacheError, match="began with"):
        run_stage(cfg.gan, run, str(tmp_path / "elsewhere"), record, False)


def test_the_cache_folder_knob(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from training.pipeline import build_parser, config_from_args

    cfg = pipeline_config("tiny", feature_cache="/shared/features")
    assert cfg.feature_cache == "/shared/features" and cfg.overrides == {}  # where, not what: not an override
    args = build_parser().parse_args(["--preset", "tiny", "--feature-cache", "/x"])
    assert config_from_args(args).feature_cache == "/x"
    monkeypatch.delenv(feature_stage.CACHE_ENV, raising=False)
    assert feature_stage.cache_dir("", tmp_path / "runs" / "a") == (tmp_path / "runs" / "feature_cache").resolve()
    monkeypatch.setenv(feature_stage.CACHE_ENV, str(tmp_path / "env"))
    assert feature_stage.cache_dir("", tmp_path / "a") == (tmp_path / "env").resolve()
    assert feature_stage.cache_dir(str(tmp_path / "knob"), tmp_path / "a") == (tmp_path / "knob").resolve()


# ---- two ranks (gloo): rank 0 alone trains and reads the file; the other gets the weights by broadcast ----

def _rank(rank: int, port: int, root: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), ELGAN_DDP_TIMEOUT_MIN="2")
    torch.set_num_threads(1)
    from elgan.train import distributed as ddp

    ddp.setup("cpu")
    calls = {"fit": 0, "load": 0}
    fit, load = feature_stage.fit_rotnet, instruments.load_feature_net
    feature_stage.fit_rotnet = lambda *a, **k: (calls.__setitem__("fit", calls["fit"] + 1), fit(*a, **k))[1]
    instruments.load_feature_net = lambda *a, **k: (calls.__setitem__("load", calls["load"] + 1), load(*a, **k))[1]
    run = Path(root) / "run"
    gan = tiny(run, device="cpu", fd_net="rotnet").gan  # FD-RotNet: no pretrained Lite0 to load
    record = ddp.on_main(lambda: run_stage(gan, run, str(Path(root) / "cache"), None, False))
    net, _ = instruments.build_instruments(feature_stage.gan_config(gan, record), torch.zeros(1, 3, 32, 32,
                                           dtype=torch.uint8), run / "gan", torch.device("cpu"), False)
    weights = torch.cat([p.detach().flatten() for p in net.parameters()]).tolist()
    (Path(root) / f"rank{rank}.json").write_text(json.dumps({**calls, "record": record, "weights": weights}))
    ddp.cleanup()


@pytest.mark.slow
def test_under_two_ranks_rank_zero_alone_trains_and_reads(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_rank, args=(port, str(tmp_path)), nprocs=2, join=True)
    zero, one = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert (zero["fit"], zero["load"], one["fit"], one["load"]) == (1, 1, 0, 0)
    assert zero["record"] == one["record"] and zero["record"]["status"] == "miss"
    assert zero["weights"] == one["weights"]
