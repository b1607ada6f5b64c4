"""Data-parallel training on CPU with gloo: two ranks must behave as one process with the whole batch.

Two processes are spawned once (torch.multiprocessing, a free port, the environment variables torchrun
sets: RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT) and run every distributed scenario in
turn, the CLI's ``main`` included, each rank writing what it saw to a JSON file that the tests below
read. Spawning once keeps this file under a minute on two shared cores.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import socket
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from elgan.config import ConfigError, GeneratorConfig, UNetConfig, gan_config
from elgan.nets.generator import LayeredGenerator
from elgan.train.gan_trainer import GanTrainer, train_gan

KEYS = ("d_adv", "d_real", "d_fake", "d_recover_c", "g_adv", "g_binarize", "g_recover_c", "g_recover_csup",
        "g_equivariance", "g_moment_reg", "g_total", "mask_area")


def tiny(ablation: str = "E", **over):
    """32 px, width 4, global batch 4, no augmentation: every random draw is a fed input or a code."""
    base = dict(data_limit=32, batch=4, iters=2, rotnet_iters=2, fd_every=2, fd_samples=8, sample_every=2,
                ckpt_every=2, log_every=1, diffaugment="", hflip=False, rrc=False, device="cpu")
    base.update(over)
    return gan_config(32, ablation, width=4, **base)


def global_batch(cfg, step: int):
    """The same global batch (real images, z, c, eps) for one process and for the ranks' slices."""
    g = torch.Generator().manual_seed(100 + step)
    real = torch.rand(cfg.batch, 3, cfg.size, cfg.size, generator=g) * 2 - 1
    z = torch.randn(cfg.batch, cfg.generator.z_dim, generator=g)
    c = torch.randint(0, cfg.generator.n_categories, (cfg.batch,), generator=g)
    eps = torch.rand(cfg.batch, cfg.perturb.eps_dim, generator=g) * 2 - 1
    return real, (z, c, eps)


def state_hash(*objs) -> str:
    """sha256 over parameters, buffers (BN statistics, spectral norm's u/v) and optimiser states."""
    h = hashlib.sha256()

    def add(x):
        if isinstance(x, torch.Tensor):
            h.update(x.detach().cpu().contiguous().numpy().tobytes())
        elif isinstance(x, dict):
            for k in sorted(x, key=str):
                h.update(str(k).encode())
                add(x[k])
        elif isinstance(x, (list, tuple)):
            for v in x:
                add(v)
        else:
            h.update(repr(x).encode())

    for o in objs:
        add(o.state_dict())
    return h.hexdigest()


def _trainer_hash(t: GanTrainer) -> str:
    return state_hash(t.G, t.D, t.E_pi, t.phi, t.opt_g, t.opt_d)


# ---- what each rank runs ------------------------------------------------------------------------

def _worker(rank: int, port: int, root: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), ELGAN_DDP_TIMEOUT_MIN="3")  # a bug fails, never hangs
    torch.set_num_threads(1)
    from elgan.train import distributed as ddp
    from elgan.train import unet_trainer

    ddp.setup("cpu")
    root_p, out = Path(root), {}

    # 1. two ranks x batch 2 == one process x batch 4, and bit-identical state on both ranks
    cfg = tiny()
    trainer = GanTrainer(cfg, root_p / "ranks", progress=False)  # rotnet.safetensors copied in: same net
    out["local_batch"] = trainer.local_batch
    out["logs"], half = [], slice(rank * 2, rank * 2 + 2)
    for step in range(2):
        real, codes = global_batch(cfg, step)
        out["logs"].append(ddp.mean_scalars(trainer.train_step(real[half], tuple(t[half] for t in codes))))
    out["gan_hash"] = _trainer_hash(trainer)
    out["G_params"] = {k: v.tolist() for k, v in trainer.G.state_dict().items() if k.endswith("weight")}
    out["sn_u"] = trainer.D.adv_head.parametrizations.weight[0]._u.tolist()

    # 2. the library entry point: 3 steps straight vs 2 + resume 1, under the same 2 ranks
    straight = train_gan(tiny(iters=3), root_p / "straight", progress=False)
    out["straight_fd"] = straight.best_fd
    train_gan(tiny(iters=2), root_p / "split", progress=False)
    resumed = GanTrainer(tiny(iters=3), root_p / "split", progress=False)
    resumed.load()
    resumed.fit()
    out["resumed_hash"] = _trainer_hash(resumed)

    # 3. the U-Net: DDP + SyncBN; every rank ends with the same weights
    wrapped = []
    real_wrap = ddp.wrap
    unet_trainer.ddp.wrap = lambda m, **kw: (wrapped.append(m), real_wrap(m, **kw))[1]
    torch.manual_seed(0)
    gen = LayeredGenerator(GeneratorConfig(size=32, width=4))
    ucfg = unet_trainer.UNetTrainConfig(source="stream", size=32, unet=UNetConfig(base=4, depth=3), steps=3,
                                        batch=4, val_size=8, val_every=3, log_every=1, ckpt_every=3,
                                        device="cpu")
    ur = unet_trainer.train_unet(ucfg, root_p / "unet", gen, progress=False)
    unet_trainer.ddp.wrap = real_wrap
    out["unet_hash"] = state_hash(wrapped[0])
    out["unet_steps"], out["unet_best"] = ur.steps, ur.best_val_iou

    # 4. ablation A leaves D's category head unused (find_unused_parameters); a wall-time cap stops
    #    both ranks at the same step
    a = train_gan(tiny("A", iters=2, diffaugment="color", hflip=True, rrc=True), root_p / "ablA", progress=False)
    ta = GanTrainer(tiny("A", iters=2, diffaugment="color", hflip=True, rrc=True), root_p / "ablA", progress=False)
    ta.load()
    out["ablA"] = (a.steps, _trainer_hash(ta))
    capped = train_gan(tiny(iters=5, max_minutes=1e-9), root_p / "capped", progress=False)
    out["capped"] = (capped.steps, capped.completed)

    # 5. a batch the ranks cannot split is refused on every rank
    try:
        GanTrainer(tiny(batch=5), root_p / "odd", progress=False)
        out["odd"] = None
    except ConfigError as exc:
        out["odd"] = str(exc)

    # 6. the pipeline: both training stages on both ranks, evaluation and bundle by rank 0
    from elgan.pipeline import pipeline_config, run_pipeline

    pcfg = pipeline_config("tiny", gan_iters=2, unet_steps=2, rotnet_iters=2, eval_limit=8, device="cpu")
    pr = run_pipeline(pcfg, root_p / "pipe", progress=False, log=lambda line: None)
    out["pipe"] = {"bundle": str(pr.bundle), "metrics": pr.metrics}

    # 7. the unchanged CLI, as torchrun starts it, resumes a 1-process run (last: it leaves the group)
    from training import train_gan as cli

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        out["cli_rc"] = cli.main(["--out", str(root_p / "from1"), "--resume", "--iters", "4", "--device", "cpu",
                                  "--no-progress"])
    out["cli_printed"] = printed.getvalue()
    (root_p / f"rank{rank}.json").write_text(json.dumps(out))
    ddp.cleanup()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One process's reference run, then both ranks through every scenario; {"single", 0, 1}."""
    root = tmp_path_factory.mktemp("ddp")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    cfg = tiny()
    single = GanTrainer(cfg, root / "single", progress=False)
    for net in (single.G, single.D, single.E_pi, single.feature_net):  # ranks keep NCHW (GanTrainer._to_fast_layout)
        net.to(memory_format=torch.contiguous_format)
    logs = []
    for step in range(2):
        real, codes = global_batch(cfg, step)
        logs.append(single.train_step(real, codes))
    (root / "ranks").mkdir()
    shutil.copy(root / "single" / "rotnet.safetensors", root / "ranks" / "rotnet.safetensors")
    train_gan(tiny(iters=2), root / "from1", progress=False)  # the 1-process checkpoint to resume
    mp.spawn(_worker, args=(_free_port(), str(root)), nprocs=2, join=True)
    torch.set_num_threads(threads)
    result = {r: json.loads((root / f"rank{r}.json").read_text()) for r in (0, 1)}
    result["single"] = {"logs": logs, "G_params": {k: v.tolist() for k, v in single.G.state_dict().items()
                                                   if k.endswith("weight")}}
    result["root"] = root
    return result


# ---- the tests ----------------------------------------------------------------------------------

def test_global_batch_is_split(runs):
    assert runs[0]["local_batch"] == runs[1]["local_batch"] == 2


def test_ranks_hold_bit_identical_weights_and_buffers(runs):
    # parameters, BN running statistics, spectral norm's u/v and Adam's moments, after two steps
    assert runs[0]["gan_hash"] == runs[1]["gan_hash"]
    assert runs[0]["sn_u"] == runs[1]["sn_u"]
    assert runs[0]["unet_hash"] == runs[1]["unet_hash"]


def test_two_ranks_match_one_process_with_the_whole_batch(runs):
    # SyncBatchNorm, the global moment regulariser and DDP's gradient average make the split invisible
    for step in range(2):
        one, two = runs["single"]["logs"][step], runs[0]["logs"][step]
        for key in KEYS:
            assert two[key] == pytest.approx(one[key], rel=1e-4, abs=1e-5), (step, key)
    # Adam's first steps move each weight by about lr * sign(gradient). Where a gradient is at rounding-noise
    # level, averaging it over two ranks instead of one batch can flip its sign on some CPUs: a move of up to
    # 2 lr per step for those few entries (seen: 90 of 122,880 in one layer). A real split bug moves many.
    lr, steps = tiny().lr, 2
    for name, w in runs["single"]["G_params"].items():
        diff = (torch.tensor(runs[0]["G_params"][name]) - torch.tensor(w)).abs()
        assert (diff > 1e-5).float().mean() < 2e-3, name
        assert diff.max() <= 2 * lr * steps + 1e-5, name


def test_resume_is_exact_for_the_same_number_of_ranks(runs):
    from elgan.checkpoint import load_bundle

    assert runs[0]["resumed_hash"] == runs[1]["resumed_hash"]
    straight, split = (load_bundle(runs["root"] / run / "last.safetensors") for run in ("straight", "split"))
    for net, tensors in straight.tensors.items():  # 2 steps + resume + 1 step == 3 steps, bit for bit
        assert all(torch.equal(t, split.tensors[net][k]) for k, t in tensors.items()), net
    log = [json.loads(x)["step"] for x in (runs["root"] / "split" / "log.jsonl").read_text().splitlines()]
    assert log == [1, 2, 3]
    assert runs[0]["straight_fd"] == runs[1]["straight_fd"] is not None  # rank 0's FD, broadcast


def test_cli_resumes_a_one_process_run_under_two(runs):
    from elgan.checkpoint import load_state

    assert runs[0]["cli_rc"] == runs[1]["cli_rc"] == 0
    assert "finished at step 4" in runs[0]["cli_printed"] and runs[1]["cli_printed"] == ""  # rank 0 prints
    log = [json.loads(x)["step"] for x in (runs["root"] / "from1" / "log.jsonl").read_text().splitlines()]
    assert log == [1, 2, 3, 4]
    state = load_state(runs["root"] / "from1" / "state.safetensors")
    assert state["step"] == 4 and len(state["rng_ranks"]) == 2
    # rank 0 continued the saved stream; rank 1 derived a stream of its own from it
    assert not torch.equal(state["rng_ranks"][0], state["rng_ranks"][1])


def test_unet_runs_data_parallel(runs):
    assert runs[0]["unet_steps"] == runs[1]["unet_steps"] == 3
    assert runs[0]["unet_best"] == runs[1]["unet_best"] is not None
    assert (runs["root"] / "unet" / "best.safetensors").exists()


def test_unused_head_and_time_cap(runs):
    assert runs[0]["ablA"] == runs[1]["ablA"] and runs[0]["ablA"][0] == 2
    assert runs[0]["capped"] == runs[1]["capped"] == [1, False]


def test_pipeline_under_two_ranks(runs):
    assert runs[0]["pipe"] == runs[1]["pipe"] and runs[0]["pipe"]["metrics"]["n"] == 8
    pipe = runs["root"] / "pipe"
    assert all((pipe / f).exists() for f in ("bundle.safetensors", "gan/DONE", "unet/DONE", "eval.json"))


def test_indivisible_batch_is_refused(runs):
    assert runs[0]["odd"] and runs[0]["odd"] == runs[1]["odd"]
    assert "multiple of 2" in runs[0]["odd"]


def _lmdb(path: Path, n: int) -> Path:
    """An LSUN-style LMDB export: key -> encoded image (flat colour 30 * i, 48 x 40)."""
    lmdb = pytest.importorskip("lmdb")
    import numpy as np
    from PIL import Image

    env = lmdb.open(str(path), map_size=1 << 24)
    with env.begin(write=True) as txn:
        for i in range(n):
            Image.fromarray(np.full((40, 48, 3), 30 * i % 256, np.uint8)).save(path / "tmp.png")
            txn.put(f"img{i:02d}".encode(), (path / "tmp.png").read_bytes())
    env.close()
    (path / "tmp.png").unlink()
    return path


def test_lsun_lmdb_streams_through_the_loader(tmp_path):
    from elgan.data import load_dataset
    from elgan.data.lsun import LmdbImages, lsun_batches

    _lmdb(tmp_path, 8)
    loaded = load_dataset(f"lsun:{tmp_path}", "train", 32, with_masks=False)
    assert loaded.images.shape == (8, 3, 32, 32)
    images = LmdbImages(tmp_path, 32)
    assert len(images) == 8 and torch.equal(images[3], loaded.images[3])
    # two ranks, one worker process each: disjoint halves of every epoch, reshuffled per epoch
    seen = []
    for rank in (0, 1):
        it = lsun_batches(images, 2, rank=rank, world_size=2, seed=0, workers=1)
        epoch0 = [next(it) for _ in range(2)]
        seen.append({int(b[j, 0, 0, 0]) for b in epoch0 for j in range(2)})
        assert all(b.shape == (2, 3, 32, 32) and b.dtype == torch.uint8 for b in epoch0)
    assert not seen[0] & seen[1] and len(seen[0] | seen[1]) == 8


def test_gan_trains_on_a_streamed_lmdb(tmp_path):
    (tmp_path / "lsun").mkdir()
    data = _lmdb(tmp_path / "lsun", 12)
    cfg = tiny(data=f"lsun:{data}", stream=True, data_workers=1, batch=4, iters=2, data_limit=0, fd_samples=8)
    r = train_gan(cfg, tmp_path / "run", progress=False)
    assert r.steps == 2 and (tmp_path / "run" / "last.safetensors").exists()
    with pytest.raises(ConfigError, match="LMDB"):
        tiny(stream=True)  # synthetic data cannot be streamed


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_and_resumes(tmp_path, precision):
    from elgan.checkpoint import load_state

    r = train_gan(tiny(precision=precision, iters=2), tmp_path / "run", progress=False)
    assert r.steps == 2
    state = load_state(tmp_path / "run" / "state.safetensors")
    assert ("scaler_g" in state) == (precision == "fp16")  # one GradScaler per optimiser, resumable
    t = GanTrainer(tiny(precision=precision, iters=3), tmp_path / "run", progress=False)
    t.load()
    logs = t.train_step()
    assert all(torch.isfinite(torch.tensor(v)) for v in logs.values())
    assert t.D.adv_head.parametrizations.weight[0]._u.dtype == torch.float32  # spectral norm stays fp32


def test_unet_in_bf16(tmp_path):
    from elgan.train.unet_trainer import UNetTrainConfig, train_unet

    torch.manual_seed(0)
    cfg = UNetTrainConfig(source="stream", size=32, unet=UNetConfig(base=4, depth=3), steps=2, batch=4, val_size=8,
                          val_every=2, device="cpu", precision="bf16")
    r = train_unet(cfg, tmp_path / "u", LayeredGenerator(GeneratorConfig(size=32, width=4)), progress=False)
    assert r.steps == 2 and r.best_val_iou is not None


def test_inception_fid_refuses_clearly_without_torch_fidelity(tmp_path, monkeypatch):
    """FD-Lite0 is the offline default; asking for FID without torch-fidelity fails before training."""
    monkeypatch.setitem(sys.modules, "torch_fidelity", None)  # import torch_fidelity -> ImportError
    weights = tmp_path / "weights-inception-2015-12-05-6726825d.pth"
    weights.write_bytes(b"")
    with pytest.raises(ConfigError, match="torch-fidelity"):
        train_gan(tiny(inception=str(weights)), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
    assert GanTrainer.fd_name.fget(type("T", (), {"cfg": tiny()})()) == "FD-Lite0"
    assert GanTrainer.fd_name.fget(type("T", (), {"cfg": tiny(fd_net="rotnet")})()) == "FD-RotNet"
