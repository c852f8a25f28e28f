#!/usr/bin/env python3
"""Every public name of the installed headers is named in docs/**/*.md.

The headers: include/anyevent.h, include/anyevent/*.h and the integration
headers integrations/*/anyevent-*.h (a new header there is checked without
editing this script). The names: functions, typedefs, struct and enum tags,
enum constants and macros (include guards aside). A name counts as documented
when it appears as a whole word in some docs/**/*.md file.

Also: every check of the conformance suite (the T(test_...) entries of
tests/conformance.c's table) is described in docs/conformance.md.

Usage: doc-check.py [SOURCE_ROOT]   (default: the folder above this script)
Exits 1 listing the names no doc mentions, header by header.
"""
import pathlib
import re
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).resolve().parent.parent)


def strip_comments_and_strings(text):
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    return re.sub(r'"(?:\\.|[^"\\])*"', '""', text)


def public_names(text):
    """The names a header declares for its users, in order of appearance."""
    text = strip_comments_and_strings(text)
    names = []
    lines = text.replace("\\\n", " ").split("\n")
    code = []
    for line in lines:
        m = re.match(r"\s*#\s*define\s+(\w+)", line)
        if m and not m.group(1).endswith("_H"):
            names.append(m.group(1))
        if not line.lstrip().startswith("#"):
            code.append(line)
    code = "\n".join(code)
    code = re.sub(r'extern\s+""\s*\{', " ", code)  # extern "C" {
    # Enum constants and tags, then struct/union tags.
    for m in re.finditer(r"\benum\s*(\w*)\s*\{([^}]*)\}", code):
        if m.group(1):
            names.append(m.group(1))
        for item in m.group(2).split(","):
            item = item.strip()
            if item:
                names.append(re.match(r"\w+", item).group(0))
    for m in re.finditer(r"\b(?:struct|union)\s+(\w+)\s*\{", code):
        names.append(m.group(1))
    # Top-level statements only: drop what is between braces (struct members).
    flat, depth = [], 0
    for ch in code:
        if ch == "{":
            depth += 1
            if depth == 1:
                flat.append(" {} ")
        elif ch == "}":
            depth -= 1
        elif depth == 0:
            flat.append(ch)
    for stmt in re.split(r";|\{\}", "".join(flat)):
        stmt = " ".join(stmt.split())
        if not stmt:
            continue
        if stmt.startswith("typedef "):
            m = re.search(r"\(\s*\*\s*(\w+)\s*\)\s*\(", stmt)  # function pointer type
            if not m:
                m = re.search(r"(\w+)\s*(?:\[[^\]]*\]\s*)*$", stmt)
            if m:
                names.append(m.group(1))
            continue
        # A function declaration (or a static inline definition): the first
        # name followed by its parameters.
        for m in re.finditer(r"(\w+)\s*\(", stmt):
            if m.group(1) != "__attribute__":
                names.append(m.group(1))
                break
    return list(dict.fromkeys(names))


def main():
    headers = [root / "include" / "anyevent.h"]
    headers += sorted((root / "include" / "anyevent").glob("*.h"))
    headers += sorted((root / "integrations").glob("*/anyevent-*.h"))
    docs = sorted((root / "docs").rglob("*.md"))
    if not docs or not headers[0].exists():
        print(f"doc-check: no docs or no include/anyevent.h under {root}")
        return 2
    words = set()
    for d in docs:
        words.update(re.findall(r"\w+", d.read_text(encoding="utf-8")))
    missing_total, checked = 0, 0
    for h in headers:
        names = public_names(h.read_text(encoding="utf-8"))
        checked += len(names)
        missing = [n for n in names if n not in words]
        if missing:
            missing_total += len(missing)
            print(f"{h.relative_to(root)}: not named in docs/**/*.md:")
            for n in missing:
                print(f"    {n}")
    table = root / "tests" / "conformance.c"
    checks = re.findall(r"\bT\((test_\w+)\)", table.read_text(encoding="utf-8")) if table.exists() else []
    conformance_md = root / "docs" / "conformance.md"
    described = set(re.findall(r"`(test_\w+)`", conformance_md.read_text(encoding="utf-8"))) if conformance_md.exists() else set()
    undescribed = [c for c in checks if c not in described]
    if undescribed:
        print("tests/conformance.c: checks not described in docs/conformance.md (\"Every check\"):")
        for c in undescribed:
            print(f"    {c}")
    if missing_total:
        print(f"doc-check: {missing_total} of {checked} public names are not documented")
    if missing_total or undescribed:
        return 1
    print(f"doc-check: all {checked} public names of {len(headers)} headers are named in docs/, "
          f"all {len(checks)} conformance checks described in docs/conformance.md")
    return 0


sys.exit(main())
