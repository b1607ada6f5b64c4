"""The library (elgan/) is the method only: it imports neither gradio nor the app's own package (studio/)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APP_ONLY = ("gradio", "gradio_client", "studio", "app")


def _imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_library_imports_no_app_code() -> None:
    sources = sorted((ROOT / "elgan").rglob("*.py"))
    assert sources, "elgan/ not found"
    offenders = {str(path.relative_to(ROOT)): sorted(name for name in _imported(path)
                                                     if name.split(".")[0] in APP_ONLY)
                 for path in sources}
    assert not {k: v for k, v in offenders.items() if v}


def test_app_package_lives_beside_the_app() -> None:
    assert (ROOT / "studio" / "__init__.py").is_file() and (ROOT / "app.py").is_file()
    assert not (ROOT / "elgan" / "studio").exists()


def _resolved(path: Path) -> set[str]:
    """Every elgan module `path` imports, relative imports resolved to dotted names."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    package = parts[:-1] if parts[-1] != "__init__" else parts[:-1]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {n for n in names if n.startswith("elgan")}


def test_method_modules_do_not_reach_into_training_infrastructure() -> None:
    """The method (nets, perturbation, losses, synthesis, evaluation, bundles) sits below elgan.train:
    only the modules that run or read training may import it."""
    allowed = {"elgan/pipeline.py", "elgan/ablation.py"}
    sources = [p for p in sorted((ROOT / "elgan").rglob("*.py")) if "train" not in p.relative_to(ROOT).parts[1:2]]
    assert (ROOT / "elgan" / "gan_loss.py") in sources and (ROOT / "elgan" / "nets" / "generator.py") in sources
    offenders = {str(p.relative_to(ROOT)): sorted(n for n in _resolved(p) if n.startswith("elgan.train"))
                 for p in sources if str(p.relative_to(ROOT)) not in allowed}
    assert not {k: v for k, v in offenders.items() if v}
    assert any(n.startswith("elgan.train") for n in _resolved(ROOT / "elgan" / "pipeline.py"))  # the check sees imports


def test_training_programs_import_no_app_code() -> None:
    """The CLIs (training/) are the library's other front end, beside the app: what both need lives in
    elgan/, so no program reaches into studio/ or app.py (nor gradio), at module level or in a function."""
    sources = sorted((ROOT / "training").rglob("*.py"))
    assert (ROOT / "training" / "invert.py") in sources, "training/ not found"
    offenders = {str(path.relative_to(ROOT)): sorted(name for name in _imported(path)
                                                     if name.split(".")[0] in APP_ONLY)
                 for path in sources}
    assert not {k: v for k, v in offenders.items() if v}
