"""The shape a newcomer relies on: no product module imports another in a cycle. (That the stage logic needing no
orchestration imports no Prefect is tests/test_prefect_edge.py's.)"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parents[1]
PRODUCT = sorted(p for folder in ("flows", "tasks") for p in (ROOT / folder).rglob("*.py"))


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path, names: set[str]) -> set[str]:
    """The product modules `path` imports when it is imported (not those imported inside functions, which are
    deliberate deferrals, nor those under `if TYPE_CHECKING:`)."""
    found: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            candidates = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        found |= {name for name in candidates if name in names}
    return found


def test_no_product_module_imports_another_in_a_cycle() -> None:
    names = {module_name(p): p for p in PRODUCT}
    graph = {name: imported(path, set(names)) - {name} for name, path in names.items()}

    def cycle_from(name: str, trail: tuple[str, ...]) -> tuple[str, ...] | None:
        if name in trail:
            return (*trail[trail.index(name) :], name)
        return next((c for n in sorted(graph[name]) if (c := cycle_from(n, (*trail, name)))), None)

    assert {c for name in graph if (c := cycle_from(name, ()))} == set()
