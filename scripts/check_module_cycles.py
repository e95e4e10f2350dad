#!/usr/bin/env python3
"""Fails when the top-level modules of the proxy crate import each other in a cycle.

Each file under proxy/src belongs to a top-level module (proxy/src/store/events.rs to
`store`, proxy/src/config.rs to `config`); every `crate::<module>` path in its code, tests
included, is an edge from that module to <module>. Comments are left out: a doc link is not
a dependency. lib.rs and main.rs, which declare and start everything, are not modules of the
graph. Exits 1 and prints a cycle when there is one.

Usage: scripts/check_module_cycles.py [SRC_DIR]   (default: proxy/src beside this script)
"""

import re
import sys
from pathlib import Path

ROOTS = {"lib.rs", "main.rs"}
CRATE_PATH = re.compile(r"\bcrate::([a-z_][a-z0-9_]*)")
# `use crate::{a, b::c}`: every module named at the top of the group.
CRATE_GROUP = re.compile(r"\bcrate::\{([^}]*)\}", re.S)
# A char literal (`'"'`, `'\''`, `'\u{7f}'`), not a lifetime.
CHAR = re.compile(r"'(?:\\u\{[0-9a-fA-F]+\}|\\.|[^\\'\n])'")


def strip_comments(source: str) -> str:
    """The code without comments and without the text of string and char literals (a `//` or a
    `crate::` inside a literal is text, not code)."""
    out = []
    i, n = 0, len(source)
    while i < n:
        c = source[i]
        if source.startswith("//", i):
            end = source.find("\n", i)
            i = n if end == -1 else end
        elif source.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if source.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif source.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif c == "r" and re.match(r'r#*"', source[i:]) and not (
            i and (source[i - 1].isalnum() or source[i - 1] == "_")
        ):
            hashes = len(re.match(r"r(#*)", source[i:]).group(1))
            close = '"' + "#" * hashes
            end = source.find(close, i + 2 + hashes)
            end = n if end == -1 else end + len(close)
            out.append('""')
            i = end
        elif c == "'" and (m := CHAR.match(source, i)):
            out.append("' '")
            i = m.end()
        elif c == '"':
            j = i + 1
            while j < n and source[j] != '"':
                j += 2 if source[j] == "\\" else 1
            out.append('""')
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def module_of(src: Path, file: Path) -> str | None:
    parts = file.relative_to(src).parts
    if len(parts) == 1:
        return None if parts[0] in ROOTS else parts[0].removesuffix(".rs")
    return parts[0]


def graph(src: Path) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for file in sorted(src.rglob("*.rs")):
        module = module_of(src, file)
        if module is None:
            continue
        code = strip_comments(file.read_text(encoding="utf-8"))
        targets = set(CRATE_PATH.findall(code))
        for group in CRATE_GROUP.findall(code):
            for item in group.split(","):
                name = item.strip().split("::")[0].strip()
                if name and name != "self":
                    targets.add(name)
        edges.setdefault(module, set()).update(t for t in targets if t != module)
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """A cycle as a path that ends where it started, or None (depth-first, three colours)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def components(edges: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components (Tarjan): modules that reach each other."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.add(top)
                if top == node:
                    break
            found.append(component)

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def main() -> int:
    default = Path(__file__).resolve().parent.parent / "proxy" / "src"
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else default
    if not src.is_dir():
        print(f"check_module_cycles: no directory {src}", file=sys.stderr)
        return 2
    edges = graph(src)
    tangles = [c for c in components(edges) if len(c) > 1]
    for tangle in tangles:
        inside = {m: edges.get(m, set()) & tangle for m in tangle}
        cycle = find_cycle(inside) or []
        print(
            f"import cycle between top-level modules of {src}: " + " -> ".join(cycle)
            + f" (modules caught in cycles together: {', '.join(sorted(tangle))})"
        )
        for a, b in zip(cycle, cycle[1:]):
            print(f"  {a} uses crate::{b}")
    if tangles:
        return 1
    count = sum(len(t) for t in edges.values())
    print(f"no import cycle among {len(edges)} top-level modules of {src} ({count} edges)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
