"""The screening report reads pipeline folders: table rows, health over the last fifth, curves."""

import json
from pathlib import Path

from training import screen_report


def fake_run(root: Path, area: float, bg: float, iou: float, flat: bool = False) -> Path:
    (root / "gan").mkdir(parents=True)
    recs = [{"step": s, "mask_area": area, "mask_binary_frac": 0.5, "health_bg_minus_composite": bg,
             "health_ex_top1": 0.1,
             **({"health_warning": "x"} if bg >= 0 else {}), **({"FD-Lite0": 100.0 - s / 10} if s % 50 == 0 else {})}
            for s in range(10, 110, 10)]
    (root / "gan" / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    scores = {"acc": 0.9, "iou": iou, "miou": 0.8}  # flat: the one line of training.evaluate --json
    (root / "eval.json").write_text(json.dumps(scores if flat else {"scores": scores}))
    return root


def test_table_and_plots(tmp_path: Path, capsys) -> None:
    a = fake_run(tmp_path / "a", 0.3, -0.5, 0.61)
    b = fake_run(tmp_path / "b", 0.9, 0.4, 0.2, flat=True)
    assert screen_report.main(["--run", f"paper={a}", "--run", f"projected={b}", "--plots", str(tmp_path / "p")]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| paper") or line.startswith("| projected")]
    assert "| 100 | 90.0 (100) | 0.610 |" in rows[0] and rows[0].endswith("| -0.50 | 0.00 |")
    assert "| 0.200 |" in rows[1] and rows[1].endswith("| 0.40 | 1.00 |")  # every late step warned
    for name in ("mask_area", "bg_minus_composite", "ex_top1", "fd_lite0"):  # the names the help text gives
        assert (tmp_path / f"p_{name}.png").exists(), name
