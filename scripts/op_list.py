#!/usr/bin/env python3
"""The op list (include/lepton/expr/op_list.hpp) against the sources and the docs.

  op_list.py check --dump EXE [--root DIR]          every op defined in include/lepton/expr/*.hpp
                                                    has an entry in lepton::ops::all, and back
  op_list.py table --dump EXE [--root DIR] --check  docs/ops.md's op table is the generated one
  op_list.py table --dump EXE [--root DIR] --write  regenerates it (scripts/gen_op_table.sh)
  op_list.py scan [--root DIR]                      prints what the scan finds (for debugging)

EXE is tests/autodiff/op_list_dump.cpp built (target op_list_dump): it prints ops::all, one op a
line. The scan reads only what stays in expr/ when evaluators live in backend/cpu/: the uses of
LEPTON_UNARY_OP / LEPTON_BINARY_OP / LEPTON_COMPARE_OP, functor structs of namespace lepton::op,
`*_node` structs, and the public functions of namespace lepton and lepton::loss (function
templates returning auto, LEPTON_UNARY_FN, LEPTON_BINARY_OPERATOR, `inline constexpr *_fn NAME{}`).
Evaluator specialisations, describe<> and everything in namespace detail are ignored, wherever they
live.
"""
import argparse
import os
import re
import subprocess
import sys

# Public functions in expr/ that are not ops, each with the reason.
NOT_OPS = {
    "constant": "a leaf: wraps a tensor so that it receives no gradient (expr/node.hpp)",
    "eval": "an entry point: evaluates an expression into a new tensor (expr/evaluate.hpp)",
    "value": "an entry point: evaluates a rank-0 expression to a scalar (expr/evaluate.hpp)",
}
BEGIN, END = "<!-- op-table:begin -->", "<!-- op-table:end -->"


def strip_code(text):
    """Removes comments and string/char literal contents, keeping line structure."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append("\n" * text.count("\n", i, j))
            i = j
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            out.append(c + c)
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def split_defines(text):
    """Returns (code without #define lines, list of macro-use lines). Continuations join."""
    lines = text.replace("\\\n", " ").split("\n")
    code = [("" if ln.lstrip().startswith("#") else ln) for ln in lines]
    return "\n".join(code)


NS_RE = re.compile(r"\bnamespace\s+([A-Za-z_][\w:]*)\s*\{")
STRUCT_RE = re.compile(r"\b(?:struct|class)\s+([A-Za-z_]\w*)\s*(?:final\s*)?(?::[^;{]*)?\{")
FUNC_RE = re.compile(r"\b(?:auto|decltype\(auto\))\s+(operator\s*[^\s(]+|[A-Za-z_]\w*)\s*\(")
FNOBJ_RE = re.compile(r"\binline\s+constexpr\s+([A-Za-z_]\w*_fn)\s+([A-Za-z_]\w*)\s*\{")
OP_MACRO_RE = re.compile(r"^\s*LEPTON_(UNARY|BINARY|COMPARE)_OP\(\s*([A-Za-z_]\w*)", re.M)
FN_MACRO_RE = re.compile(r"^\s*LEPTON_UNARY_FN\(\s*([A-Za-z_]\w*)", re.M)
OPERATOR_MACRO_RE = re.compile(r"^\s*LEPTON_BINARY_OPERATOR\(\s*([^,\s]+)\s*,", re.M)


def paren_arity(code, start):
    """Number of top-level parameters of the parenthesised list opening at code[start]."""
    depth, commas, empty = 0, 0, True
    for k in range(start, len(code)):
        ch = code[k]
        if ch in "(<[":
            depth += 1
        elif ch in ")>]":
            depth -= 1
            if depth == 0:
                return 0 if empty else commas + 1
        elif ch == "," and depth == 1:
            commas += 1
        elif depth >= 1 and not ch.isspace():
            empty = False
    return 0


def scan_file(path, rel, found):
    with open(path, encoding="utf-8") as f:
        raw = strip_code(f.read())
    for m in OP_MACRO_RE.finditer(raw):
        found["functor"].setdefault(m.group(2), rel)
    for m in FN_MACRO_RE.finditer(raw):
        found["function"].setdefault(m.group(1), rel)
    for m in OPERATOR_MACRO_RE.finditer(raw):
        found["function"].setdefault("operator" + m.group(1), rel)
    code = split_defines(raw)
    # Walk the braces; a scope is a namespace path or None (a class, function or initialiser).
    events = []
    for rx, kind in ((NS_RE, "ns"), (STRUCT_RE, "struct"), (FUNC_RE, "func"), (FNOBJ_RE, "fnobj")):
        for m in rx.finditer(code):
            events.append((m.start(), kind, m))
    for k, ch in enumerate(code):
        if ch in "{}":
            events.append((k, ch, None))
    order = {"ns": 0, "struct": 0, "func": 0, "fnobj": 0, "{": 1, "}": 1}
    events.sort(key=lambda e: (e[0], order[e[1]]))
    stack = []  # entries: list of namespace names, or None
    pending_ns = {}  # position of the '{' that opens a namespace -> its names
    for pos, kind, m in events:
        in_ns = all(s is not None for s in stack)
        path = [n for s in stack if s for n in s]
        public = in_ns and path[:1] == ["lepton"] and "detail" not in path
        if kind == "ns":
            pending_ns[m.end() - 1] = m.group(1).split("::")
        elif kind == "{":
            stack.append(pending_ns.pop(pos, None))
        elif kind == "}":
            if stack:
                stack.pop()
        elif kind == "struct" and in_ns and "detail" not in path:
            name = m.group(1)
            if path == ["lepton", "op"]:
                found["functor"].setdefault(name, rel)
            elif name.endswith("_node"):
                found["node"].setdefault(name, rel)
        elif kind == "func" and public:
            name = re.sub(r"\s+", "", m.group(1))
            if name.startswith("operator") and paren_arity(code, m.end() - 1) == 1:
                name = "unary " + name
            prefix = "".join(p + "::" for p in path[1:])
            found["function"].setdefault(prefix + name, rel)
        elif kind == "fnobj" and public:
            prefix = "".join(p + "::" for p in path[1:])
            found["function"].setdefault(prefix + m.group(2), rel)


def scan(root):
    found = {"functor": {}, "node": {}, "function": {}}
    expr = os.path.join(root, "include", "lepton", "expr")
    for name in sorted(os.listdir(expr)):
        if name.endswith(".hpp") and name != "op_list.hpp":
            scan_file(os.path.join(expr, name), "lepton/expr/" + name, found)
    return found


def read_list(exe):
    out = subprocess.run([exe], check=True, capture_output=True, text=True).stdout
    ops, count = [], None
    for line in out.splitlines():
        if line.startswith("# count "):
            count = int(line.split()[2])
            continue
        f = line.split("\t")
        if len(f) != 8:
            sys.exit(f"op_list.py: unexpected line from {exe}: {line!r}")
        keys = ("name", "also", "family", "differentiable", "header", "node", "functor", "summary")
        ops.append(dict(zip(keys, f)))
    if count != len(ops):
        sys.exit(f"op_list.py: {exe} printed {len(ops)} ops but ops::count is {count}")
    return ops


def check(ops, found):
    errors = []
    listed_functions, listed_functors, listed_nodes = {}, {}, set()
    for op in ops:
        names = [op["name"]] + ([a for a in op["also"].split(",") if a] if op["also"] else [])
        for n in names:
            if not n.startswith("op::"):
                listed_functions[n.strip()] = op
        if op["functor"]:
            listed_functors[op["functor"]] = op
        if op["node"]:
            listed_nodes.add(op["node"])
    hint = "add an entry to lepton::ops::all (include/lepton/expr/op_list.hpp), see docs/ops.md"
    for fn, where in sorted(found["function"].items()):
        if fn in NOT_OPS:
            continue
        if fn not in listed_functions:
            errors.append(f"{where}: public function '{fn}' is not in the op list: {hint}")
        elif listed_functions[fn]["header"] != where:
            errors.append(f"op list: '{fn}' says header {listed_functions[fn]['header']}, but it is defined in {where}")
    for fu, where in sorted(found["functor"].items()):
        if fu not in listed_functors:
            errors.append(f"{where}: functor op::{fu} is not in the op list: {hint}")
        elif listed_functors[fu]["header"] != where:
            errors.append(f"op list: functor op::{fu} says header {listed_functors[fu]['header']}, but it is in {where}")
    for nd, where in sorted(found["node"].items()):
        if nd not in listed_nodes:
            errors.append(f"{where}: node {nd} belongs to no entry of the op list: {hint}")
    # and back: every entry names something that exists
    for n, op in sorted(listed_functions.items()):
        if n not in found["function"]:
            errors.append(f"op list: '{n}' is not a public function of include/lepton/expr/ (stale entry?)")
    for fu in sorted(listed_functors):
        if fu not in found["functor"]:
            errors.append(f"op list: functor op::{fu} is not defined in include/lepton/expr/ (stale entry?)")
    for nd in sorted(listed_nodes):
        if nd not in found["node"]:
            errors.append(f"op list: node {nd} is not defined in include/lepton/expr/ (stale entry?)")
    for op in ops:
        if op["name"].startswith("op::") and not op["functor"]:
            errors.append(f"op list: '{op['name']}' is spelled as a functor but names none")
    return errors


def md(s):
    return s.replace("|", "\\|")


def table(ops):
    rows = ["| op | family | differentiable | header | summary |", "|---|---|---|---|---|"]
    for op in ops:
        spell = f"`{op['name']}`" + (f", `{op['also']}`" if op["also"] else "")
        rows.append(f"| {md(spell)} | {op['family']} | {op['differentiable']} | `{op['header']}` | {md(op['summary'])} |")
    rows.append("")
    rows.append(f"{len(ops)} ops. Generated from `lepton::ops::all` by `scripts/gen_op_table.sh`; do not edit by hand.")
    return "\n".join(rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["check", "table", "scan"])
    ap.add_argument("--dump", help="the op_list_dump executable")
    ap.add_argument("--root", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="table: fail when docs/ops.md differs")
    mode.add_argument("--write", action="store_true", help="table: rewrite docs/ops.md")
    a = ap.parse_args()
    root = os.path.abspath(a.root)
    if a.command == "scan":
        for kind, items in scan(root).items():
            for name, where in sorted(items.items()):
                print(f"{kind}\t{name}\t{where}")
        return 0
    if not a.dump:
        ap.error("--dump EXE is required")
    ops = read_list(a.dump)
    if a.command == "check":
        found = scan(root)
        errors = check(ops, found)
        for e in errors:
            print("error: " + e)
        n = sum(len(v) for v in found.values())
        print(f"op_list: {len(ops)} ops listed, {n} definitions scanned, {len(errors)} errors"
              + (": FAILED" if errors else ": ok"))
        return 1 if errors else 0
    doc = os.path.join(root, "docs", "ops.md")
    with open(doc, encoding="utf-8") as f:
        text = f.read()
    b, e = text.find(BEGIN), text.find(END)
    if b < 0 or e < b:
        print(f"error: {doc}: no {BEGIN} ... {END} markers")
        return 1
    new = text[: b + len(BEGIN)] + "\n" + table(ops) + "\n" + text[e:]
    if a.write:
        if new != text:
            with open(doc, "w", encoding="utf-8") as f:
                f.write(new)
        print(f"op_list: wrote the table of {len(ops)} ops to {doc}")
        return 0
    if new != text:
        print(f"error: {doc}: the op table differs from lepton::ops::all; run scripts/gen_op_table.sh")
        import difflib
        sys.stdout.writelines(difflib.unified_diff(text.splitlines(True), new.splitlines(True), "docs/ops.md", "generated"))
        return 1
    print(f"op_list: docs/ops.md's table matches the {len(ops)} ops of the list: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
