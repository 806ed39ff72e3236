"""The package's layers (docs/architecture.md): a module imports only from its own
layer or those below it, lazy imports inside functions included."""

from __future__ import annotations

import ast
from pathlib import Path

import ztcore

PACKAGE = Path(ztcore.__file__).parent

# Lowest first. Shared vocabulary (errors, api, atomicfile, lazy) is below everything.
LAYERS = [
    {"errors", "api", "atomicfile", "lazy"},
    {"crypto"},
    {"identity"},
    {"vl1"},
    {"vl2"},
    {"tracing", "lane", "node"},
    {"controller"},
    {"netstack"},
    {"runtime", "simulation", "offline"},
    {"scapy"},
    {"workbench"},
    {"cli"},
    {"__main__"},
]
RANK = {name: i for i, names in enumerate(LAYERS) for name in names}


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_every_top_level_module_has_a_layer() -> None:
    tops = {
        p.stem if p.is_file() else p.name
        for p in PACKAGE.iterdir()
        if p.suffix == ".py" or (p / "__init__.py").exists()
    }
    assert tops - {"__init__"} <= set(RANK), f"no layer for {sorted(tops - set(RANK) - {'__init__'})}"


def test_no_module_imports_from_a_layer_above_its_own() -> None:
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        me = _top("ztcore." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts))
        if me in ("", "__init__"):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets = [node.module]
            else:
                continue
            for target in targets:
                them = _top(target) if target.startswith("ztcore.") else ""
                if them and RANK[them] > RANK[me]:
                    upward.append(
                        f"{path.relative_to(PACKAGE)}:{node.lineno} ({me}) imports {target} ({them})"
                    )
    assert upward == []
