#!/usr/bin/env bash
# Checks lepton's layering (docs/building.md, "Layering"): a header includes only headers of its own
# folder and of the layers it may depend on.
#
#   core -> expr -> autodiff -> eval -> backend/cpu, backend/device -> nn -> optim -> train -> dist
#   io (file formats: the one file reader, the one zlib wrapper, zip, safetensors, .npy/.npz) depends
#   on core only; data (data sets) on core and io; train and dist may use both; cuda/ (the CUDA
#   backend) sits beside backend/device; the umbrella headers (lepton.hpp, nn.hpp, ...) may include
#   anything.
#
# Includes that break the rule today are listed in KNOWN below, each with the issue that removes it
# (core v2: P11 moves the evaluators out of expr/, P12 moves training checkpoints out of io/). They
# are reported but pass; any other upward include fails. `--strict` fails on the known ones too:
# it shows what is left to do (and fails on every tree before core v2).
#
#   scripts/check_layers.sh            # CI
#   scripts/check_layers.sh --strict   # the target state
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
strict=0
for arg in "$@"; do
  case "$arg" in
    --strict) strict=1 ;;
    *) echo "check_layers.sh: unknown option '$arg' (known: --strict)" >&2; exit 2 ;;
  esac
done

STRICT=$strict python3 - <<'PY'
import os, re, sys

# What each folder may include besides itself.
below = {
    "core": [],
    "expr": ["core"],
    "autodiff": ["core", "expr"],
    "eval": ["core", "expr", "autodiff"],
    "backend/cpu": ["core", "expr", "autodiff", "eval"],
    "backend/device": ["core", "expr", "autodiff", "eval"],
    "nn": ["core", "expr", "autodiff", "eval", "backend/cpu", "backend/device"],
    "optim": ["core", "expr", "autodiff", "eval", "backend/cpu", "backend/device", "nn"],
    "io": ["core"],
    "data": ["core", "io"],  # the data readers use io's file reader and zlib wrapper
}
below["train"] = below["optim"] + ["optim", "data", "io"]
below["dist"] = below["train"] + ["train"]
below["cuda"] = below["backend/device"] + ["backend/device", "dist"]  # nccl.cuh uses dist's MPI
# Known breaks of the rule, to be removed by core v2: (file, included folder) -> issue. P11 removed
# the five of expr/ and autodiff/ (the CPU evaluators moved to backend/cpu/).
KNOWN = {}  # P12 moved training checkpoints to train/ (io/model_file.hpp keeps the file format)

def folder_of(rel):  # rel: path under include/lepton or cuda/include/lepton
    parts = rel.split("/")
    if len(parts) == 1:
        return "."
    if parts[0] == "backend" and len(parts) > 2:
        return "backend/" + parts[1]
    if parts[0] == "backend" and len(parts) == 2:
        return "backend/" + os.path.splitext(parts[1])[0]  # backend/cpu.hpp is backend/cpu's entry
    if parts[0] == "nn":
        return "nn"  # nn/layers is part of nn
    return parts[0]

roots = [("include/lepton", ""), ("cuda/include/lepton", "")]
inc_re = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]')
bad, known = [], []
checked = 0
for root, _ in roots:
    if not os.path.isdir(root):
        continue
    for dirpath, _, files in os.walk(root):
        for name in sorted(files):
            if not name.endswith((".hpp", ".cuh", ".h")):
                continue
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            src = folder_of(rel)
            if src == ".":
                continue  # umbrella headers
            checked += 1
            with open(path, encoding="utf-8") as f:
                for lineno, line in enumerate(f, 1):
                    m = inc_re.match(line)
                    if not m:
                        continue
                    kind, target = m.groups()
                    if kind == '"':
                        tgt = os.path.normpath(os.path.join(os.path.dirname(rel), target))
                    elif target.startswith("lepton/"):
                        tgt = target[len("lepton/"):]
                    else:
                        continue  # a system or third-party header
                    if tgt.startswith(".."):
                        bad.append(f"{root}/{rel}:{lineno}: includes {target}, outside the library")
                        continue
                    dst = folder_of(tgt)
                    if dst == src or dst in below.get(src, []):
                        continue
                    if dst == ".":
                        bad.append(f"{root}/{rel}:{lineno}: includes the umbrella header {target} (include what you use)")
                        continue
                    why = KNOWN.get((rel, dst))
                    msg = f"{root}/{rel}:{lineno}: {src} includes {dst} ({target})"
                    (known if why else bad).append(msg + (f"  [known: {why}]" if why else ""))

strict = os.environ.get("STRICT") == "1"
for m in known:
    print(("error: " if strict else "known: ") + m)
for m in bad:
    print("error: " + m + ": a layer may include only the layers below it")
# A KNOWN entry that no longer occurs must be deleted, so the list only shrinks.
stale = [f for (f, d) in KNOWN if not any(m.startswith(f"include/lepton/{f}:") and f"includes {d} " in m for m in known)]
for f in stale:
    print(f"error: scripts/check_layers.sh: KNOWN lists {f}, which no longer breaks the rule: delete the entry")
failed = bool(bad) or bool(stale) or (strict and bool(known))
print(f"check_layers: {checked} headers, {len(bad)} errors, {len(known)} known (core v2){', strict' if strict else ''}"
      + (": FAILED" if failed else ": ok"))
sys.exit(1 if failed else 0)
PY
