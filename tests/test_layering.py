"""The package's architecture, checked: stage layering, no imports hidden in functions, no pickle loads."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "hstu_blair"

OPTIONAL_HEAVY = {
    "faiss",
    "matplotlib",
    "sentence_transformers",
    "transformers",
    "huggingface_hub",
    "tiktoken",
    "optuna",
}
"""Optional dependencies imported inside the functions that need them (each behind an extra), so
that the package imports without them."""


def _function_imports() -> list[tuple[str, int, str]]:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for sub in ast.walk(node):
                if isinstance(sub, ast.Import):
                    found += [(str(path.relative_to(ROOT)), sub.lineno, a.name) for a in sub.names]
                elif isinstance(sub, ast.ImportFrom):
                    found.append((str(path.relative_to(ROOT)), sub.lineno, sub.module or "."))
    return found


def test_import_contracts():
    """``lint-imports`` (import-linter) with the contracts in pyproject.toml: stage layering, and
    components never importing the run config."""
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    if exe is None:
        pytest.fail("lint-imports is not installed (pip install -e '.[dev]')")
    proc = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


def test_no_package_import_inside_functions():
    inside = [
        f"{p}:{n} imports {m}" for p, n, m in _function_imports() if m.split(".")[0] in ("hstu_blair", ".")
    ]
    assert not inside, "imports of hstu_blair inside functions:\n" + "\n".join(inside)


def test_only_optional_heavy_dependencies_are_imported_late():
    late = [
        f"{p}:{n} imports {m}" for p, n, m in _function_imports() if m.split(".")[0] not in OPTIONAL_HEAVY
    ]
    assert not late, "imports inside functions that are not optional heavy dependencies:\n" + "\n".join(late)


def test_no_pickle_loading_anywhere():
    offenders = [
        f"{p.relative_to(ROOT)}:{i}"
        for p in [*SRC.rglob("*.py"), *(ROOT / "bench").glob("*.py")]
        for i, line in enumerate(p.read_text().splitlines(), start=1)
        if "weights_only=False" in line.replace(" ", "") or "pickle.load" in line
    ]
    assert not offenders, offenders


def test_data_commands_do_not_load_torch():
    code = "import sys, hstu_blair.cli; assert 'torch' not in sys.modules, 'torch imported'"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
