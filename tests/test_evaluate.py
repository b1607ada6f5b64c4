"""Evaluation: numbers on hand-built predictions, the resize/upsample protocol, the CLI's JSON contract."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from elgan.checkpoint import save_bundle
from elgan.config import UNetConfig
from elgan.evaluate import fit_size, predict_probs, score_predictions, segment_photo
from elgan.metrics import error_shares
from elgan.nets.unet import UNet


def _half_masks(n: int, size: int) -> torch.Tensor:
    """uint8 [n, 1, S, S]: the left half is foreground."""
    m = torch.zeros(n, 1, size, size, dtype=torch.uint8)
    m[..., : size // 2] = 1
    return m


def test_scores_of_hand_built_predictions() -> None:
    images = torch.zeros(2, 3, 8, 8, dtype=torch.uint8)
    truth = _half_masks(2, 8)  # 32 fg pixels per image
    perfect = score_predictions(lambda x: truth[: len(x)].float(), images, truth)
    assert (perfect.scores.acc, perfect.scores.iou, perfect.scores.miou) == (1.0, 1.0, 1.0)

    # image 0 predicts everything foreground: tp 32, fp 32 -> IoU 0.5, bg IoU 0, acc 0.5
    # image 1 predicts the left quarter: tp 16, fn 16 -> IoU 0.5, bg IoU 32/48, acc 0.75
    pred = torch.zeros(2, 1, 8, 8)
    pred[0] = 0.9
    pred[1, ..., :2] = 0.6
    ev = score_predictions(lambda x: pred, images, truth, batch=2)
    assert ev.scores.acc == pytest.approx(0.625)
    assert ev.scores.iou == pytest.approx(48 / 96)  # dataset level: (32 + 16) / (64 + 32)
    assert ev.scores.miou == pytest.approx((0.5 + 32 / 80) / 2)
    assert ev.per_image_iou.tolist() == pytest.approx([0.5, 0.5])
    # which way it errs: 32 false fg (image 0) and 16 missed (image 1) of 64 true fg pixels in 128
    e = error_shares(ev.counts)
    assert e == pytest.approx({"pred_area": 80 / 128, "true_area": 64 / 128, "false_fg": 32 / 64,
                               "missed_fg": 16 / 64})
    per_image = score_predictions(lambda x: pred, images, truth, convention="per_image").scores
    assert per_image.miou == pytest.approx(((0.5 + 0) / 2 + (0.5 + 32 / 48) / 2) / 2)
    with pytest.raises(ValueError):
        score_predictions(lambda x: pred, images, truth[:1])


class HalfPlane(nn.Module):
    """A stand-in 'U-Net' working at 64: logit +4 left of centre, -4 right; records what it was fed."""

    multiple = 16

    def __init__(self, postprocess: str = "none") -> None:
        super().__init__()
        self.cfg = UNetConfig(postprocess=postprocess)
        self.input_size = 64
        self.dummy = nn.Parameter(torch.zeros(()))
        self.seen: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(tuple(x.shape))
        out = torch.full((x.shape[0], 1, *x.shape[2:]), -4.0)
        out[..., : x.shape[-1] // 2] = 4.0
        return out + self.dummy


def test_protocol_upsamples_a_64_prediction_to_128() -> None:
    net = HalfPlane()
    images = torch.randint(0, 256, (3, 3, 128, 128), dtype=torch.uint8)
    prob = predict_probs(net, images)  # type: ignore[arg-type]
    assert net.seen == [(3, 3, 64, 64)]  # the model saw its own resolution
    assert prob.shape == (3, 1, 128, 128)  # the probability came back at the evaluation resolution
    assert prob.min() >= 0 and prob.max() <= 1
    assert torch.equal(prob > 0.5, _half_masks(3, 128).bool())  # thresholded after upsampling
    ev = score_predictions(lambda x: predict_probs(net, x), images, _half_masks(3, 128))  # type: ignore
    assert ev.scores.iou == 1.0 and ev.scores.n == 3
    assert predict_probs(net, images, input_size=128).shape == (3, 1, 128, 128)
    assert net.seen[-1] == (3, 3, 128, 128)


def test_segment_photo_keeps_the_photo_size() -> None:
    assert fit_size(300, 200, 64, 16) == (96, 64)
    net = HalfPlane()
    prob = segment_photo(net, Image.new("RGB", (90, 60)))  # type: ignore[arg-type]
    assert prob.shape == (60, 90) and prob.dtype == np.float32
    assert net.seen == [(1, 3, 64, 96)]
    assert (prob[:, :40] > 0.5).all() and (prob[:, 50:] < 0.5).all()


def _cub_fixture(root: Path, n: int = 6) -> Path:
    """CUB layout: images.txt, images/<cls>/<x>.jpg, segmentations/<cls>/<x>.png, ReDO's split file."""
    lines, split = [], []
    for i in range(1, n + 1):
        rel = f"001.Toy/bird_{i}.jpg"
        a = np.full((48, 64, 3), 30, np.uint8)
        m = np.zeros((48, 64), np.uint8)
        a[10:40, 15 + i:45 + i] = (220, 200, 40)
        m[10:40, 15 + i:45 + i] = 255
        (root / "images/001.Toy").mkdir(parents=True, exist_ok=True)
        (root / "segmentations/001.Toy").mkdir(parents=True, exist_ok=True)
        Image.fromarray(a).save(root / "images" / rel, quality=95)
        Image.fromarray(m, "L").save((root / "segmentations" / rel).with_suffix(".png"))
        lines.append(f"{i} {rel}")
        split.append(f"{i} {0 if i <= n - 4 else 2}")
    (root / "images.txt").write_text("\n".join(lines) + "\n")
    (root / "train_val_test_split.txt").write_text("\n".join(split) + "\n")
    return root


def test_cli_json_contract(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from training.evaluate import main

    cub = _cub_fixture(tmp_path / "cub")
    torch.manual_seed(0)
    unet = UNet(UNetConfig(base=4, depth=3))
    ckpt = tmp_path / "unet.safetensors"
    save_bundle(ckpt, {"unet": unet}, {"unet": unet.cfg}, {"unet_size": 32})
    csv_path = tmp_path / "iou.csv"
    assert main(["--unet", str(ckpt), "--data", f"cub:{cub}", "--split", "test", "--json", "--size", "64",
                 "--per-image", str(csv_path)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    scores = json.loads(out[-1])
    assert set(scores) == {"acc", "iou", "miou", "n"} and scores["n"] == 4
    assert all(0.0 <= scores[k] <= 1.0 for k in ("acc", "iou", "miou"))
    rows = csv_path.read_text().splitlines()
    assert len(rows) == 5 and rows[0] == "index,path,iou,pred_area,true_area"
    assert all(0.0 <= float(v) <= 1.0 for row in rows[1:] for v in row.split(",")[-2:])
    assert any(line.startswith("mask area predicted") for line in out)

    assert main(["--unet", str(tmp_path / "missing.safetensors"), "--data", f"cub:{cub}", "--json"]) == 2
    save_bundle(tmp_path / "nounet.safetensors", {"other": nn.Linear(1, 1)})
    assert main(["--unet", str(tmp_path / "nounet.safetensors"), "--data", f"cub:{cub}"]) == 2
    assert "no" in capsys.readouterr().err.lower()


def test_segment_folder_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from training.segment_folder import main

    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    Image.new("RGB", (40, 30), (200, 10, 10)).save(photos / "a.jpg")
    Image.new("RGB", (20, 50), (10, 200, 10)).save(photos / "sub" / "b.png")
    (photos / "broken.jpg").write_bytes(b"not an image")
    torch.manual_seed(0)
    unet = UNet(UNetConfig(base=4, depth=3))
    ckpt = tmp_path / "unet.safetensors"
    save_bundle(ckpt, {"unet": unet}, {"unet": unet.cfg}, {"unet_size": 32})
    out = tmp_path / "seg"
    args = ["--unet", str(ckpt), "--in", str(photos), "--out", str(out), "--no-progress"]
    assert main(args) == 1  # one photo is broken
    assert "2 segmented, 0 already done, 1 unreadable" in capsys.readouterr().out
    mask = np.asarray(Image.open(out / "masks" / "sub" / "b.png"))
    cut = Image.open(out / "cutouts" / "a.png")
    assert mask.shape == (50, 20) and set(np.unique(mask)) <= {0, 255}
    assert cut.mode == "RGBA" and cut.size == (40, 30)
    assert main(args) == 1
    assert "0 segmented, 2 already done" in capsys.readouterr().out
    assert main(["--unet", str(ckpt), "--in", str(tmp_path / "none"), "--out", str(out)]) == 2


def test_compare_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """One table: baselines (hand-checkable on a centred-square data set) and a bundle's U-Net."""
    from training.compare import main

    root = tmp_path / "photos"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(3):  # a flat centred square on a flat background
        img = np.full((40, 40, 3), 30, np.uint8)
        mask = np.zeros((40, 40), np.uint8)
        mask[10:30, 10:30] = 255
        img[mask > 0] = (200, 180, 20)
        Image.fromarray(img).save(root / "images" / f"p{i}.png")
        Image.fromarray(mask).save(root / "masks" / f"p{i}.png")
    torch.manual_seed(0)
    unet = UNet(UNetConfig(base=4, depth=3))
    ckpt = tmp_path / "unet.safetensors"
    save_bundle(ckpt, {"unet": unet}, {"unet": unet.cfg}, {"unet_size": 32})
    out_json = tmp_path / "rows.json"
    assert main(["--data", f"folder:{root}", "--size", "32", "--baselines", "--model", f"random U-Net={ckpt}",
                 "--json", str(out_json)]) == 0
    rows = {r["method"]: r for r in json.loads(out_json.read_text())["rows"]}
    kmeans = rows["2-means colour, better polarity (trivial)"]
    assert kmeans["iou"] == pytest.approx(1.0) and kmeans["n"] == 3  # two flat colours: 2-means is exact
    assert 0.0 < rows["centred ellipse (trivial)"]["iou"] < 1.0 and rows["random U-Net"]["n"] == 3
    assert "| random U-Net |" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--data", f"folder:{root}", "--model", "no-equals-sign"])
    assert main(["--data", f"folder:{root}", "--model", f"x={tmp_path / 'missing.safetensors'}"]) == 2
