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
