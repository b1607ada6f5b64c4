"""The Train tab's stage line, read off a run folder as a job fills it (no training: the files are faked)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from studio import jobs, progress


def _gan_config(folder: Path, iters: int = 200, **kw: object) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    cfg = {"iters": iters, "log_every": 25, "rotnet_iters": 300, "rotnet": "", **kw}
    (folder / "config.json").write_text(json.dumps(cfg))


def _log(folder: Path, *records: dict) -> None:
    with open(folder / "log.jsonl", "a") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")


def test_gan_run_stages_from_the_first_second(tmp_path: Path) -> None:
    run = tmp_path / "00001-gan-synthetic-32-E"
    run.mkdir()
    assert "starting" in progress.stage_line(run, "gan")
    _gan_config(run)  # the default GanTrainConfig (config E) trains its RotNet first
    line = progress.stage_line(run, "gan")
    assert "loading the training images" in line and "RotNet, 300 steps" in line
    (run / "rotnet.safetensors").write_bytes(b"x")
    assert "first numbers and curves come at step 25 of 200" in progress.stage_line(run, "gan")
    _log(run, {"step": 50, "time": 10.0, "imgs_per_s": 160.0, "g_adv": 1.0},
         {"step": 100, "time": 20.0, "imgs_per_s": 160.0, "FD-Lite0": 42.123})
    line = progress.stage_line(run, "gan")
    assert "step 100 of 200 (50%)" in line and "160 images/s" in line and "about 0:20 left" in line
    assert "picture-quality distance 42.1" in line and "FD-Lite0" in line


def test_pipeline_stages(tmp_path: Path) -> None:
    run = tmp_path / "00002-pipeline-synthetic-32-E"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"unet": {"steps": 40}}))
    assert progress.stage_line(run, "pipeline").startswith("stage 1 of 4 — preparing the perceptual net")
    (run / "features").mkdir()
    (run / "features" / "DONE").write_text("{}")
    assert progress.stage_line(run, "pipeline").startswith("stage 1 of 4 — starting")
    _gan_config(run / "gan", ablation="E")
    (run / "gan" / "DONE").write_text("{}")
    line = progress.stage_line(run, "pipeline")
    assert line.startswith("stage 2 of 4") and "segmenter (U-Net)" in line
    (run / "unet").mkdir()
    _log(run / "unet", {"step": 10, "loss": 0.5}, {"step": 20, "loss": 0.4, "val_iou": 0.8})
    line = progress.stage_line(run, "pipeline")
    assert "step 20 of 40 (50%)" in line and "80%" in line
    (run / "unet" / "DONE").write_text("{}")
    assert progress.stage_line(run, "pipeline").startswith("stage 3 of 4 — scoring")
    (run / "eval.json").write_text("{}")
    assert progress.stage_line(run, "pipeline").startswith("stage 4 of 4 — writing")


def test_job_line_running_and_ended(tmp_path: Path) -> None:
    run = tmp_path / "00003-gan-synthetic-32-C"
    _gan_config(run, loss={"equivariance": False}, fd_net="lite0")  # no RotNet to train
    (run / jobs.RUN_INFO).write_text(json.dumps({"started": time.time() - 75}))
    line = progress.job_line(jobs.JobStatus(True, run, pid=4242, message="running"), "gan")
    assert line.startswith("**Running** `00003-gan-synthetic-32-C` · 1:1") and "so far" in line
    assert "training the GAN" in line and "4242" not in line and str(tmp_path) not in line
    _log(run, {"step": 5, "time": 1.0, "FD-RotNet": 3.5, "health_warning": "mask collapsed"})
    line = progress.job_line(jobs.JobStatus(False, run, returncode=0, message="finished"), "gan")
    assert "finished" in line and "GAN: 5 steps" in line and "picture-quality distance 3.5" in line
    assert "warning: mask collapsed" in line
