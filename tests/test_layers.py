"""The package's layers, enforced: a module imports only from its own sub-package and the layers below it.

    ops                 tensor helpers every layer shares
    geometry            the face mesh, its UV atlas and mirror map, rendering
    models, data        pure networks (they may read the mesh's mirror map) / photos -> fitted meshes -> UV maps
    protocol            holes, test cases, metrics, baselines, reports
    train               the training loop, stages, losses, batches, checkpoints
    study               what the notebooks share: profiles, stage context, recipes, figures
    app                 the command line: prep, evaluate, complete, export, train
"""
import ast
import re
from pathlib import Path

import uvlib

LAYERS = {"ops": 0, "geometry": 1, "models": 2, "data": 2, "protocol": 3, "train": 4, "study": 5, "app": 6,
          "__main__": 7}
PACKAGE = Path(uvlib.__file__).parent


def layer_of(dotted: str) -> str:
    """'uvlib.protocol.cases' -> 'protocol'; 'uvlib' (the root: only __version__) -> ''."""
    parts = dotted.split(".")
    return parts[1] if len(parts) > 1 else ""


def uvlib_imports(path: Path):
    """Every uvlib module a file imports, at any depth (imports inside functions too)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                yield f"relative import of {node.module!r}"   # not allowed: layers must be visible by name
            elif node.module and node.module.split(".")[0] == "uvlib":
                yield node.module
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.split(".")[0] == "uvlib")


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        dotted = ".".join(("uvlib",) + path.relative_to(PACKAGE).with_suffix("").parts)
        if dotted != "uvlib.__init__":
            yield path, dotted.removesuffix(".__init__")


def test_every_module_sits_in_a_layer():
    assert {layer_of(d) for _, d in modules()} <= set(LAYERS)


def test_no_import_runs_back_up():
    violations = []
    for path, dotted in modules():
        own = layer_of(dotted)
        for target in uvlib_imports(path):
            if target.startswith("relative"):
                violations.append(f"{dotted}: {target}")
                continue
            layer = layer_of(target)
            if layer in ("", own):
                continue
            if LAYERS[layer] >= LAYERS[own]:
                violations.append(f"{dotted} imports {target} ({layer} is not below {own})")
    assert not violations, "\n".join(violations)


def test_the_checker_sees_an_upward_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from uvlib.train.loop import train\n")
    assert list(uvlib_imports(bad)) == ["uvlib.train.loop"]
    assert LAYERS[layer_of("uvlib.train.loop")] > LAYERS[layer_of("uvlib.models.pconv")]


def readme_layout() -> dict:
    """{sub-package: module names} as the README's Layout section draws them: "  NAME/   a, b, c   words",
    module lists continuing on lines of their own."""
    text = (PACKAGE.parent / "README.md").read_text()
    block = text[text.index("## Layout"):]
    block = block[block.index("```\nuvlib/") + 4:block.index("\nnotebooks/")]
    layout, current = {}, None
    for line in block.splitlines()[1:]:
        segments = re.split(r"\s{2,}", line.strip())
        if segments[0].endswith("/"):
            current = segments[0].rstrip("/")
            listed = segments[1] if len(segments) > 1 else ""
        else:
            listed = segments[0]
        names = [n.strip() for n in listed.rstrip(",").split(",")]
        if current and all(n.isidentifier() for n in names):
            layout.setdefault(current, set()).update(names)
    return layout


def test_readme_layout_matches_the_tree():
    tree = {}
    for path in PACKAGE.glob("*/*.py"):
        if path.stem != "__init__":
            tree.setdefault(path.parent.name, set()).add(path.stem)
    assert readme_layout() == tree
