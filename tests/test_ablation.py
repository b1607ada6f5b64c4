"""Table 3 machinery: the variants' configs, a tiny end-to-end ablation, the PNG chart."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from elgan.ablation import VARIANTS, variant_config
from elgan.config import ConfigError
from elgan.plots import PALETTE, line_chart
from training import ablation as cli


def test_variants_add_one_ingredient_each(tmp_path: Path) -> None:
    g = {v: variant_config(v, tmp_path, size=32, gan_iters=10).gan for v in VARIANTS}
    assert g["A"].loss.mask_size and not g["A"].loss.recovery and g["A"].perturb.eps_names == ("tx", "ty")
    assert g["B"].loss.recovery and not g["B"].loss.mask_size and g["B"].perturb.eps_names == ("tx", "ty")
    assert g["C"].perturb.eps_names == ("tx", "ty", "scale")
    assert g["D"].perturb.eps_names == ("tx", "ty", "rotation", "scale") and not g["D"].loss.equivariance
    assert g["E"].loss.equivariance and g["E"].phi.eps_dim == 4
    nr, npt = g["no-recovery"], g["no-perturb"]
    assert not nr.loss.recovery and not nr.loss.mask_size and nr.perturb.eps_dim == 2
    assert npt.loss.recovery and npt.perturb.eps_dim == 0 and npt.phi.eps_dim == 0
    # the same budget and seed everywhere; only the ingredients differ
    assert len({(c.iters, c.seed, c.batch, c.size, c.loss.equi_rampup_iters) for c in g.values()}) == 1
    with pytest.raises(ConfigError, match="variant"):
        variant_config("F", tmp_path)


def test_tiny_ablation_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--out", str(tmp_path / "abl"), "--variants", "A,no-perturb", "--size", "32", "--width", "4",
            "--gan-iters", "6", "--unet-steps", "4", "--rotnet-iters", "3", "--fd-every", "3",
            "--eval-limit", "16", "--threads", "1", "--no-progress"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| A ") or line.startswith("| no-perturb ")]
    assert len(rows) == 2 and all("| 6 |" in r for r in rows)
    abl = tmp_path / "abl"
    # neither variant needs a RotNet (no equivariance loss, selection by FD-Lite0): none was trained
    assert not (abl / "A/gan/rotnet.safetensors").exists()
    assert not (abl / "no-perturb/gan/rotnet.safetensors").exists()
    assert Image.open(abl / "mask_area.png").size == (760, 420)
    assert (abl / "table.md").read_text().count("\n") == 4
    assert cli.main(argv) == 0  # finished variants are read back, not retrained
    with pytest.raises(SystemExit):
        cli.main(["--out", str(abl), "--variants", "Z"])
    with pytest.raises(SystemExit):
        cli.main(["--out", str(abl), "--gan-iters", "0"])


def test_line_chart(tmp_path: Path) -> None:
    line_chart({"a": ([0, 1, 2], [0.1, 0.5, 0.9]), "b": ([0], [0.3])}, tmp_path / "c.png", title="t",
               xlabel="x", ylabel="y", y_range=(0, 1))
    img = Image.open(tmp_path / "c.png")
    assert (img.format, img.mode, img.size) == ("PNG", "RGB", (760, 420))
    pixels = np.asarray(img).reshape(-1, 3)
    for colour in PALETTE[:2]:  # both series (the one-point one as a dot) in their palette colours
        assert (pixels == colour).all(axis=1).any(), colour
    line_chart({"a": ([0, 5], [2.0, 2.0])}, tmp_path / "flat.png", size=(300, 200))  # constant: no crash
    assert Image.open(tmp_path / "flat.png").size == (300, 200)
    with pytest.raises(ValueError, match="empty"):
        line_chart({"a": ([], [])}, tmp_path / "d.png")
    with pytest.raises(ValueError, match="x values"):
        line_chart({"a": ([0, 1], [0.5])}, tmp_path / "e.png")
