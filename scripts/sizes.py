#!/usr/bin/env python3
"""Size budgets of style.md, measured on rustfmt-formatted sources.

Prints the files over a line budget and the share of non-test functions over 50 and 80
lines, and lists every function over 80 lines with whether a comment above it says why.

A function is measured from its `fn` line to the closing brace at the same indentation,
so it relies on rustfmt's layout. Test code is left out: files named `tests.rs` or under a
`tests/` folder, `#[cfg(test)]` modules, and functions marked `#[test]` or `#[tokio::test]`.

Usage: scripts/sizes.py [ROOT] [--list]
"""
import os
import re
import sys

FN = re.compile(r"^(\s*)(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?(extern\s+\"[^\"]*\"\s+)?fn\s+(\w+)")
SKIP_DIRS = {"target", ".git", "node_modules", "fuzz/corpus", ".outrider"}


def rust_files(root):
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS and os.path.join(rel, d) not in SKIP_DIRS]
        for name in filenames:
            if name.endswith(".rs"):
                yield os.path.join(dirpath, name)


def is_test_path(path):
    parts = path.split(os.sep)
    return parts[-1] == "tests.rs" or "tests" in parts[:-1] or "benches" in parts[:-1]


def block_end(lines, start, indent):
    """Index of the line closing the item that opens at `start` with `indent`."""
    closing = indent + "}"
    for i in range(start, len(lines)):
        line = lines[i].rstrip("\n")
        if i == start and line.rstrip().endswith("}"):
            return i
        if i > start and (line == closing or line.startswith(closing + " ") or line == closing + ";"):
            return i
        if i > start and line.strip() and not line.startswith(indent + " ") and not line.startswith(indent + "}"):
            # A line less indented than the item: the item was a declaration without body.
            if not line.startswith(indent) or line[len(indent)] not in " }":
                return None
    return None


def functions(path):
    with open(path, encoding="utf-8") as f:
        lines = f.readlines()
    test_path = is_test_path(path)
    skip_until = -1
    attrs = []
    out = []
    for i, raw in enumerate(lines):
        line = raw.rstrip("\n")
        stripped = line.strip()
        if i <= skip_until:
            continue
        if stripped.startswith("#["):
            attrs.append(stripped)
            continue
        if stripped.startswith("mod ") and stripped.endswith("{") and any("cfg(test)" in a for a in attrs):
            indent = line[: len(line) - len(line.lstrip())]
            end = block_end(lines, i, indent)
            skip_until = end if end is not None else len(lines)
            attrs = []
            continue
        m = FN.match(line)
        if m:
            indent = m.group(1)
            # Find the line that opens the body (signature may span lines) or ends with `;`.
            j = i
            while j < len(lines) and not lines[j].rstrip().endswith("{") and not lines[j].rstrip().endswith(";"):
                j += 1
            if j < len(lines) and lines[j].rstrip().endswith("{"):
                end = block_end(lines, j, indent) if j != i else block_end(lines, i, indent)
                if end is not None:
                    test = test_path or any(re.search(r"\btest\b", a) for a in attrs)
                    comment = ""
                    k = i - 1
                    while k >= 0 and lines[k].strip().startswith("#["):
                        k -= 1
                    while k >= 0 and lines[k].strip().startswith("//"):
                        comment = lines[k].strip() + " " + comment
                        k -= 1
                    out.append((m.group(8), i + 1, end - i + 1, test, comment))
        if stripped and not stripped.startswith("//"):
            attrs = []
    return out, len(lines)


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    listing = "--list" in sys.argv
    root = args[0] if args else "."
    fns = []
    big_files = []
    for path in sorted(rust_files(root)):
        found, n = functions(path)
        rel = os.path.relpath(path, root)
        if n > 500:
            big_files.append((n, rel))
        fns.extend((rel, *f) for f in found)
    prod = [f for f in fns if not f[4]]
    over50 = [f for f in prod if f[3] > 50]
    over80 = [f for f in prod if f[3] > 80]
    print(f"files over 500 lines: {len(big_files)}")
    for n, rel in sorted(big_files, reverse=True):
        print(f"  {n:5} {rel}")
    share = 100.0 * len(over50) / max(1, len(prod))
    print(f"non-test functions: {len(prod)}; over 50 lines: {len(over50)} ({share:.1f} %); over 80: {len(over80)}")
    for rel, name, line, size, _, comment in sorted(over80, key=lambda f: -f[3]):
        why = "commented" if re.search(r"(?i)\blong\b|\bwhy\b|lines", comment) else "NO REASON"
        print(f"  {size:4} {rel}:{line} {name} [{why}]")
    if listing:
        print("over 50:")
        for rel, name, line, size, _, _ in sorted(over50, key=lambda f: -f[3]):
            print(f"  {size:4} {rel}:{line} {name}")


if __name__ == "__main__":
    main()
