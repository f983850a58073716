"""The house rules (docs/design.md#layout), read from the code itself:
- dependencies point one way: CLI -> apps -> stages -> capabilities -> core; trainer -> core;
  nothing imports the CLI; no import cycles between files;
- code and docs cite only documents the repository holds, and links into docs/ resolve;
- the README stays an entry page (<= 300 lines).
"""
from __future__ import annotations

import ast
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("pipeline", "discriminators", "trainer")

# Every module belongs to one layer; a new module fails test_every_module_has_a_layer until it
# is placed here (longest prefix wins).
LAYER_OF_PREFIX = {
    "pipeline.cli": "cli",
    **{f"pipeline.{m}": "app" for m in ("runner", "preflight", "engines", "flywheel", "rounds", "judge", "validate",
                                       "report", "scan", "labeling")},
    "pipeline.stages": "stage",
    **{f"pipeline.{m}": "capability" for m in ("dedup", "quality", "mixing", "pii", "synth")},
    "discriminators": "capability",
    "trainer": "trainer",
    **{f"pipeline.{m}": "core" for m in ("config", "schema", "shards", "integrity", "text", "shingles", "embed",
                                           "templates", "io", "progress", "card")},
    "pipeline": "core",  # the package itself: only __version__
}
# What each layer may import besides its own home (see `home`).
MAY_IMPORT = {
    "cli": {"app", "stage", "capability", "core", "trainer"},
    "app": {"app", "stage", "capability", "core", "trainer"},
    "stage": {"capability", "core"},
    "capability": {"core"},
    "trainer": {"core"},
    "core": {"core"},
}


def layer(mod: str) -> str | None:
    best = max((p for p in LAYER_OF_PREFIX if mod == p or mod.startswith(p + ".")), key=len, default=None)
    return LAYER_OF_PREFIX.get(best) if best else None


def home(mod: str) -> str:
    """The unit a module may import freely within: its capability package, `pipeline.stages`
    (a stage file may use the stage contract in base.py), `trainer`, or the module itself."""
    parts = mod.split(".")
    if parts[0] in ("discriminators", "trainer"):
        return parts[0]
    if len(parts) >= 2 and layer(mod) in ("capability", "stage"):
        return ".".join(parts[:2])
    return mod


def modules() -> dict[str, str]:
    out = {}
    for pkg in PACKAGES:
        for dirpath, _, files in os.walk(os.path.join(ROOT, pkg)):
            for f in files:
                if f.endswith(".py"):
                    rel = os.path.relpath(os.path.join(dirpath, f), ROOT)[:-3].split(os.sep)
                    if rel[-1] == "__init__":
                        rel = rel[:-1]
                    out[".".join(rel)] = os.path.join(dirpath, f)
    return out


def imports_of(mod: str, path: str, known: set[str]) -> set[str]:
    """Project modules `mod` imports anywhere in the file (function-level imports included)."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    pkg = mod if path.endswith("__init__.py") else mod.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [f"{target}.{a.name}" if f"{target}.{a.name}" in known else target for a in node.names]
        else:
            continue
        for n in names:
            while n and n not in known:  # `import pipeline.stages.base as b` -> that module
                n = n.rpartition(".")[0]
            if n and n != mod:
                found.add(n)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {m: imports_of(m, p, set(mods)) for m, p in mods.items()}


def broken_rules(g: dict[str, set[str]]) -> list[str]:
    bad = []
    for a, deps in sorted(g.items()):
        la = layer(a)
        for b in sorted(deps):
            lb = layer(b)
            if lb == "cli":
                bad.append(f"{a} imports the CLI {b}")
            elif home(a) != home(b) and lb not in MAY_IMPORT[la]:
                bad.append(f"{a} ({la}) imports {b} ({lb})")
            elif la == "stage" == lb and home(a) == home(b) and b != "pipeline.stages.base":
                bad.append(f"{a} imports another stage {b}")
    return bad


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_every_module_has_a_layer():
    assert [m for m in modules() if layer(m) is None] == []


def test_dependencies_point_one_way():
    assert broken_rules(graph()) == []


def test_no_import_cycles():
    assert cycles(graph()) == []


def test_the_checks_catch_breaks():
    """The rule and cycle checks flag what the house forbids (so the two tests above can fail)."""
    g = {"pipeline.dedup.minhash": {"pipeline.stages.base"},  # capability -> stage
         "pipeline.stages.base": {"pipeline.shards"},
         "trainer.pack": {"pipeline.synth.backends"},  # trainer -> capability
         "pipeline.synth.backends": {"pipeline.templates"},
         "pipeline.runner": {"pipeline.stages.mix", "pipeline.cli"},  # app -> CLI
         "pipeline.stages.mix": {"pipeline.runner", "pipeline.stages.dedup"},  # stage -> app, other stage
         "pipeline.quality.signals": {"pipeline.dedup.minhash"},  # capability -> other capability
         "pipeline.dedup.keys": {"pipeline.dedup.minhash", "pipeline.shingles"}}  # allowed
    bad = broken_rules(g)
    assert bad == ["pipeline.dedup.minhash (capability) imports pipeline.stages.base (stage)",
                   "pipeline.quality.signals (capability) imports pipeline.dedup.minhash (capability)",
                   "pipeline.runner imports the CLI pipeline.cli",
                   "pipeline.stages.mix (stage) imports pipeline.runner (app)",
                   "pipeline.stages.mix imports another stage pipeline.stages.dedup",
                   "trainer.pack (trainer) imports pipeline.synth.backends (capability)"]
    assert cycles(g) == [["pipeline.runner", "pipeline.stages.mix"]]


# ----------------------------------------------------------------------------- documents

TEXT_ROOTS = ("pipeline", "discriminators", "trainer", "tests", "bench", "configs", "docs")
TEXT_FILES = ("README.md", "Makefile", "pyproject.toml")
# Documents users never see (they lived next to the repository) and the ids they numbered.
FOREIGN = re.compile(r"\bSPEC\b|ARCHITECTURE\.md|\bR(?:1[0-5]|[1-9])(?:\.\d)?\b(?![-'])|\bissue \d+|\.\./shared(?!/evaldata)")
DOC_REF = re.compile(r"(?<![\w/.-])((?:\.\./)*docs/[\w./-]+\.md)(#[\w-]+)?")
MD_LINK = re.compile(r"\]\(([^)\s]+)\)")


def text_files() -> list[str]:
    out = [os.path.join(ROOT, f) for f in TEXT_FILES]
    for r in TEXT_ROOTS:
        for dirpath, _, files in os.walk(os.path.join(ROOT, r)):
            if "__pycache__" in dirpath or os.sep + "assets" in dirpath:
                continue
            out += [os.path.join(dirpath, f) for f in files
                    if f.endswith((".py", ".md", ".yaml", ".yml", ".txt")) and f != os.path.basename(__file__)]
    return sorted(p for p in out if os.path.exists(p))


def slugs(md_path: str) -> set[str]:
    """GitHub heading anchors of a markdown file."""
    out = set()
    with open(md_path, encoding="utf-8") as f:
        in_code = False
        for line in f:
            if line.startswith("```"):
                in_code = not in_code
            m = re.match(r"#{1,6} (.+)", line) if not in_code else None
            if m:
                t = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower().replace("`", ""))
                out.add(t.replace(" ", "-"))
    return out


def _read(p: str) -> str:
    with open(p, encoding="utf-8") as f:
        return f.read()


def test_no_reference_to_documents_outside_the_repository():
    hits = []
    for p in text_files():
        for i, line in enumerate(_read(p).splitlines(), 1):
            if FOREIGN.search(line) and "evaldata" not in line:
                hits.append(f"{os.path.relpath(p, ROOT)}:{i}: {line.strip()[:100]}")
    assert hits == []


def test_references_into_docs_resolve():
    bad = []
    for p in text_files():
        text = _read(p)
        refs = [(m.group(1), m.group(2)) for m in DOC_REF.finditer(text)]
        if p.endswith(".md"):  # relative markdown links, from the file's folder
            for target in MD_LINK.findall(text):
                if "://" in target or target.startswith(("mailto:", "#")):
                    continue
                path, _, anchor = target.partition("#")
                full = os.path.normpath(os.path.join(os.path.dirname(p), path)) if path else p
                if not os.path.exists(full):
                    bad.append(f"{os.path.relpath(p, ROOT)}: link {target} (no such file)")
                elif anchor and full.endswith(".md") and anchor not in slugs(full):
                    bad.append(f"{os.path.relpath(p, ROOT)}: link {target} (no such heading)")
        for ref, anchor in refs:
            full = os.path.join(ROOT, ref[ref.index("docs/"):])
            if not os.path.exists(full):
                bad.append(f"{os.path.relpath(p, ROOT)}: {ref} does not exist")
            elif anchor and anchor[1:] not in slugs(full):
                bad.append(f"{os.path.relpath(p, ROOT)}: {ref}{anchor}: no such heading")
    assert bad == []


def test_readme_is_an_entry_page():
    lines = _read(os.path.join(ROOT, "README.md")).splitlines()
    assert len(lines) <= 300
    assert "make test" in _read(os.path.join(ROOT, "README.md"))


@pytest.mark.parametrize("line,hit", [("see SPEC R12 4.d", True), ("(R8-R10)", True), ("issue 5, item 3", True),
                                      ("ARCHITECTURE.md", True), ("../shared/SPEC.md", True),
                                      ("../shared/evaldata/tiage", False), ("docs/design.md#loss 4.d", False),
                                      ("R2-score", False), ("BERT", False)])
def test_foreign_reference_pattern(line, hit):
    assert bool(FOREIGN.search(line)) is hit
