#!/usr/bin/env python3
"""Fails when the top-level modules of a Rust crate import each other in a circle.

Usage: scripts/check-module-cycles.py [--graph] [SRC_DIR ...]
       (default: src ecs-client/src ecs-sim/src, relative to the repository root)

For every crate root in SRC_DIR (lib.rs, main.rs, bin/*.rs, bin/*/main.rs) it walks the module
tree from the `mod` declarations (including `#[path = ...]` and inline `mod x { ... }` blocks),
and records an edge A -> B between top-level modules when code in A (any file or inline module
below it, tests included) names B through `use crate::...`, `use super::...`, `use self::...` or
an inline `crate::b::...` / `super::...` path. A name re-exported by the crate root
(`pub use b::Item;`) counts as B. Comments and string literals are ignored. Every strongly
connected component of more than one module is a circle: it is printed with the lines that make
each of its edges, and the exit status is 1. The crate root itself is not a node (it declares
every module, so it would close every path).

A heuristic, not a compiler: macro-generated paths, `#[path]` on inline modules and glob
re-exports at the crate root are not followed.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def strip_code(text: str) -> str:
    """Blanks comments, string and char literals (keeping offsets and newlines)."""
    out = list(text)
    i, n = 0, len(text)

    def blank(a: int, b: int) -> None:
        for k in range(a, min(b, n)):
            if out[k] != "\n":
                out[k] = " "

    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            blank(i, j)
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            blank(i, j)
            i = j
        elif (m := re.match(r'b?r(#*)"', text[i:])) and (i == 0 or not re.match(r"\w", text[i - 1])):
            close = '"' + m.group(1)
            j = text.find(close, i + m.end())
            j = n if j < 0 else j + len(close)
            blank(i, j)
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            blank(i, j + 1)
            i = j + 1
        elif c == "'":
            if i + 1 < n and text[i + 1] == "\\":
                j = text.find("'", i + 2)
                j = n if j < 0 else j + 1
                blank(i, j)
                i = j
            elif i + 2 < n and text[i + 2] == "'":
                blank(i, i + 3)
                i += 3
            else:  # a lifetime or label
                i += 1
        else:
            i += 1
    return "".join(out)


def matching_brace(text: str, open_at: int) -> int:
    depth = 0
    for k in range(open_at, len(text)):
        if text[k] == "{":
            depth += 1
        elif text[k] == "}":
            depth -= 1
            if depth == 0:
                return k
    return len(text)


def flatten_use_tree(tree: str) -> list[list[str]]:
    """`crate::{a::{self, X}, b}` -> [[crate, a, self], [crate, a, X], [crate, b]]."""
    tokens = re.findall(rf"::|[{{}},*]|{IDENT}", tree)
    pos = 0

    def parse(prefix: list[str]) -> list[list[str]]:
        nonlocal pos
        paths: list[list[str]] = []
        current = list(prefix)
        while pos < len(tokens):
            t = tokens[pos]
            if t == "{":
                pos += 1
                paths.extend(parse(current))
                current = None  # the group ends this branch
            elif t == "}":
                pos += 1
                break
            elif t == ",":
                pos += 1
                if current is not None and len(current) > len(prefix):
                    paths.append(current)
                current = list(prefix)
                continue
            elif t == "::":
                pos += 1
                continue
            elif t == "as":
                pos += 2  # skip the alias
                continue
            else:
                if current is not None:
                    current.append(t)
                pos += 1
        if current is not None and len(current) > len(prefix):
            paths.append(current)
        return paths

    return parse([])


@dataclass
class Source:
    path: Path
    module: list[str]  # module path of the file, [] for the crate root
    text: str  # stripped code
    raw_lines: list[str]
    inline: list[tuple[int, int, str]] = field(default_factory=list)  # (start, end, name)

    def module_at(self, pos: int) -> list[str]:
        extra = [name for (a, b, name) in self.inline if a <= pos <= b]
        return self.module + extra

    def line_of(self, pos: int) -> int:
        return self.text.count("\n", 0, pos) + 1


MOD_DECL = re.compile(
    rf"((?:#\s*\[[^\]]*\]\s*)*)(?:pub(?:\s*\([^)]*\))?\s+)?mod\s+({IDENT})\s*([;{{])"
)
PATH_ATTR = re.compile(r'#\s*\[\s*path\s*=\s*"([^"]*)"\s*\]')


def load_crate(root_file: Path) -> list[Source]:
    sources: list[Source] = []

    def load(file: Path, module: list[str], is_mod_rs: bool) -> None:
        raw = file.read_text(encoding="utf-8")
        text = strip_code(raw)
        src = Source(file, module, text, raw.splitlines())
        sources.append(src)
        for m in MOD_DECL.finditer(text):
            name = m.group(2)
            if m.group(3) == "{":
                open_at = m.end() - 1
                src.inline.append((open_at, matching_brace(text, open_at), name))
                continue
            outer = [n for (a, b, n) in src.inline if a <= m.start() <= b]
            # `#[path]` is in the stripped text as blanks: read it from the raw text.
            attr = PATH_ATTR.search(raw[m.start() : m.end()])
            base = file.parent if is_mod_rs else file.parent / file.stem
            for n in outer:
                base = base / n
            if attr:
                candidates = [(file.parent / attr.group(1), False)]
            else:
                candidates = [(base / f"{name}.rs", False), (base / name / "mod.rs", True)]
            for cand, cand_mod_rs in candidates:
                if cand.is_file():
                    load(cand, module + outer + [name], cand_mod_rs or bool(attr) and cand.name == "mod.rs")
                    break
            else:
                print(f"warning: {file}: module `{name}` has no file", file=sys.stderr)

    load(root_file, [], True)
    return sources


def references(src: Source) -> list[tuple[int, list[str]]]:
    """(offset, path) of every crate-relative path named in the file."""
    refs: list[tuple[int, list[str]]] = []
    text = src.text
    spans: list[tuple[int, int]] = []
    for m in re.finditer(r"\buse\s+([^;]*);", text):
        spans.append((m.start(), m.end()))
        for path in flatten_use_tree(m.group(1)):
            if path and path[0] in ("crate", "super", "self"):
                refs.append((m.start(), path))
    inline = re.compile(rf"\b(?:crate|super|self)(?:\s*::\s*{IDENT})+")
    for m in inline.finditer(text):
        if any(a <= m.start() < b for a, b in spans):
            continue
        refs.append((m.start(), re.findall(IDENT, m.group(0))))
    return refs


def resolve(module: list[str], path: list[str]) -> list[str] | None:
    if path[0] == "crate":
        return path[1:]
    base = list(module)
    rest = list(path)
    if rest[0] == "self":
        rest = rest[1:]
    while rest and rest[0] == "super":
        if not base:
            return None
        base.pop()
        rest = rest[1:]
    return base + rest


def analyse(root_file: Path, show_graph: bool) -> bool:
    sources = load_crate(root_file)
    root = sources[0]
    top = sorted({s.module[0] for s in sources if s.module} | {n for (_, _, n) in root.inline})
    # Names the crate root imports from one of its modules (`pub use resource::EcsInstance;`).
    reexports: dict[str, str] = {}
    for m in re.finditer(r"\buse\s+([^;]*);", root.text):
        if root.module_at(m.start()):
            continue
        tree = m.group(1)
        for path in flatten_use_tree(tree):
            if path and path[0] in ("crate", "self"):
                path = path[1:]
            if len(path) >= 2 and path[0] in top:
                alias = re.search(rf"\b{re.escape(path[-1])}\s+as\s+({IDENT})", tree)
                reexports[alias.group(1) if alias else path[-1]] = path[0]

    edges: dict[tuple[str, str], list[str]] = {}
    for src in sources:
        for pos, path in references(src):
            module = src.module_at(pos)
            if not module:
                continue  # the crate root
            target = resolve(module, path)
            if not target:
                continue
            if target[0] in top:
                to = target[0]
            elif len(target) == 1 or target[0] in reexports:
                to = reexports.get(target[0])
            else:
                to = None
            if to and to != module[0]:
                where = f"{src.path}:{src.line_of(pos)}: {src.raw_lines[src.line_of(pos) - 1].strip()}"
                wheres = edges.setdefault((module[0], to), [])
                if where not in wheres:
                    wheres.append(where)

    graph: dict[str, set[str]] = {n: set() for n in top}
    for a, b in edges:
        graph[a].add(b)

    print(f"{root_file}: {len(top)} top-level modules, {len(edges)} dependencies between them")
    if show_graph:
        for n in top:
            print(f"  {n} -> {', '.join(sorted(graph[n])) or '(none)'}")

    circles = [c for c in strongly_connected(graph) if len(c) > 1]
    for comp in circles:
        members = set(comp)
        print(f"  CIRCLE among {{{', '.join(sorted(comp))}}}: {' -> '.join(one_cycle(graph, members))}")
        for (a, b), wheres in sorted(edges.items()):
            if a in members and b in members:
                print(f"    {a} -> {b}")
                for w in wheres:
                    print(f"      {w}")
    if not circles:
        print("  no circles")
    return not circles


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    result: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            result.append(comp)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return result


def one_cycle(graph: dict[str, set[str]], members: set[str]) -> list[str]:
    """A shortest circle through the alphabetically first member (breadth-first)."""
    start = min(members)
    parent: dict[str, str] = {}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(graph[v] & members):
            if w == start:
                path = [v]
                while path[-1] != start:
                    path.append(parent[path[-1]])
                return list(reversed(path)) + [start]
            if w not in parent:
                parent[w] = v
                queue.append(w)
    return [start]


def crate_roots(src_dir: Path) -> list[Path]:
    roots = [src_dir / f for f in ("lib.rs", "main.rs") if (src_dir / f).is_file()]
    bin_dir = src_dir / "bin"
    if bin_dir.is_dir():
        roots += sorted(bin_dir.glob("*.rs")) + sorted(bin_dir.glob("*/main.rs"))
    return roots


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--graph", action="store_true", help="also print every module's dependencies")
    parser.add_argument("src_dirs", nargs="*", type=Path)
    args = parser.parse_args()
    repo = Path(__file__).resolve().parent.parent
    dirs = args.src_dirs or [repo / "src", repo / "ecs-client/src", repo / "ecs-sim/src"]
    ok = True
    for d in dirs:
        roots = crate_roots(d)
        if not roots:
            print(f"{d}: no crate root (lib.rs, main.rs, bin/)", file=sys.stderr)
            ok = False
        for r in roots:
            ok &= analyse(r, args.graph)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
