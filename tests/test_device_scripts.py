"""scripts/pack_device_runs.py: the selection rules of the GPU batch and a transfer that reassembles."""

import importlib.util
import json
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("pack_device_runs", ROOT / "scripts" / "pack_device_runs.py")
pack = importlib.util.module_from_spec(spec)
spec.loader.exec_module(pack)


def fake_run(root: Path, name: str, *, val_iou=None, best_fd=None, bundle_bytes=0, fds=()) -> None:
    run = root / name
    (run / "gan" / "samples").mkdir(parents=True)
    if val_iou is not None:
        (run / "val.json").write_text("progress line\n" + json.dumps({"acc": 0.9, "iou": val_iou, "miou": 0.8}))
    (run / "gan" / "DONE").write_text(json.dumps({"best_fd": best_fd, "steps": 10}, indent=2))
    (run / "gan" / "log.jsonl").write_text("".join(json.dumps({"step": s, "FD-RotNet": fd}) + "\n" for s, fd in fds))
    for step in (5, 10, 15):
        (run / "gan" / "samples" / f"{step:07d}.png").write_bytes(b"png")
    if bundle_bytes:
        (run / "bundle.safetensors").write_bytes(bytes(range(256)) * (bundle_bytes // 256))


def test_rules_and_parts(tmp_path, monkeypatch):
    runs, out = tmp_path / "runs", tmp_path / "out"
    fake_run(runs, "syn-E", val_iou=0.2, bundle_bytes=1024)
    fake_run(runs, "syn-B", val_iou=0.5, bundle_bytes=5000)
    fake_run(runs, "syn-X", val_iou=0.9)  # best val but no bundle: cannot be shipped
    fake_run(runs, "horse-E", best_fd=1.9, bundle_bytes=1024, fds=[(5, 1.9)])
    fake_run(runs, "horse-B", best_fd=1.2, bundle_bytes=2048, fds=[(5, 3.0), (10, 1.2)])
    fake_run(runs, "horse-Z", best_fd=None, bundle_bytes=1024)  # no FD measured: out of the choice
    names = ["syn-E", "syn-B", "syn-X", "horse-E", "horse-B", "horse-Z"]
    sel = pack.choose(runs, names)
    assert sel["synthetic"] == "syn-B" and sel["horse"] == "horse-B"
    assert set(sel["horse_fd"]) == {"horse-E", "horse-B"}

    monkeypatch.setattr(pack, "PART", 2000)
    monkeypatch.setattr("sys.argv", ["pack", "--runs", str(runs), "--out", str(out), "--names", *names])
    pack.main()
    parts = sorted(out.glob("syn-B.safetensors.part*"))
    assert len(parts) == 3 and all(p.stat().st_size <= 2000 for p in parts)
    assert b"".join(p.read_bytes() for p in parts) == (runs / "syn-B" / "bundle.safetensors").read_bytes()
    with tarfile.open(out / "runs.tgz") as tar:
        members = set(tar.getnames())
    assert "horse-B/gan/samples/0000010.png" in members  # the best-FD step's grid
    assert "horse-B/gan/samples/0000015.png" in members  # and the last
    assert "horse-B/gan/samples/0000005.png" not in members
    assert not any(m.endswith("bundle.safetensors") or "state" in m for m in members)
    assert json.loads((out / "selection.json").read_text())["synthetic"] == "syn-B"


def test_no_fd_anywhere_falls_back_to_a_horse_run_with_a_bundle(tmp_path):
    fake_run(tmp_path, "horse-E", best_fd=None, bundle_bytes=256)
    assert pack.choose(tmp_path, ["horse-E"])["horse"] == "horse-E"
