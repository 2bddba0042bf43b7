"""The package's ownership facts (issue 26), checked on the source: who talks to torch.distributed
and the launcher's environment, who names a run directory's files, who reads checkpoint files,
whether deploy/ depends on the training engine, and how long the trainer is.

    python tools/check_structure.py               # this tree; exit 1 when a fact fails
    python tools/check_structure.py --before REV  # the same facts at git revision REV, side by side

Each fact lists the offending modules; the rule it checks is in ``FACTS``.
"""
from __future__ import annotations

import argparse
import ast
import os
import re
import subprocess
import sys
from typing import Callable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DISTRIBUTED = "rcdml/distributed/"
RUN_DIR = "rcdml/rundir.py"
READER = "rcdml/checkpoint_file.py"
TRAINER = "rcdml/engine/trainer.py"
TRAINER_MAX_LINES = 250
# The launcher's variables: only rcdml/distributed reads them.
_LAUNCH_ENV = re.compile(r"^(RANK|WORLD_SIZE|LOCAL_\w+|TORCHELASTIC_\w+)$")
# The files of a run directory (rcdml/rundir.py's layout).
_RUN_FILES = {"last.pt", "prev.pt", "best.pt", "metrics.jsonl", "tensorboard", "config.yaml",
              "config_history.jsonl", "summary.json", ".lock", "retrieval"}
_PICTURE = re.compile(r"^epoch_.*\.png$")


def _strings(tree: ast.AST) -> list[str]:
    """String constants that are not docstrings; an f-string as its text with ``{}`` for each
    field."""
    docs = {id(node.body[0].value) for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and node.body and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)}
    joined = [n for n in ast.walk(tree) if isinstance(n, ast.JoinedStr)]
    parts = {id(v) for n in joined for v in n.values}
    texts = ["".join(v.value if isinstance(v, ast.Constant) else "{}" for v in n.values)
             for n in joined]
    return texts + [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)
                    and isinstance(n.value, str) and id(n) not in docs | parts]


def uses_torch_distributed(tree: ast.AST) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name.startswith("torch.distributed") for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("torch.distributed"):
            return True
        if isinstance(node, ast.ImportFrom) and node.module == "torch" and any(
                a.name == "distributed" for a in node.names):
            return True
        if (isinstance(node, ast.Attribute) and node.attr == "distributed"
                and isinstance(node.value, ast.Name) and node.value.id == "torch"):
            return True
    return False


def reads_launch_env(tree: ast.AST) -> bool:
    return any(_LAUNCH_ENV.match(s) for s in _strings(tree))


def names_run_files(tree: ast.AST) -> bool:
    return any(s in _RUN_FILES or _PICTURE.match(s) for s in _strings(tree))


def _torch_load(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "load"
               and isinstance(n.func.value, ast.Name) and n.func.value.id == "torch"
               for n in ast.walk(node))


def reads_checkpoints(tree: ast.AST) -> bool:
    return _torch_load(tree)


def loaders(sources: dict[str, str]) -> list[str]:
    """Functions that call ``torch.load``: each is a way of reading a checkpoint."""
    return sorted(f"{path}:{node.name}" for path, src in sources.items()
                  for node in ast.walk(ast.parse(src))
                  if isinstance(node, ast.FunctionDef) and _torch_load(node))


def imports_engine(tree: ast.AST) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("rcdml.engine"):
            return True
        if isinstance(node, ast.Import) and any(a.name.startswith("rcdml.engine") for a in node.names):
            return True
    return False


# (fact, which modules the rule applies to, the rule a module breaks)
FACTS: list[tuple[str, Callable[[str], bool], Callable[[ast.AST], bool]]] = [
    ("torch.distributed outside rcdml/distributed", lambda p: not p.startswith(DISTRIBUTED),
     uses_torch_distributed),
    ("launcher env (RANK, WORLD_SIZE, LOCAL_*, TORCHELASTIC_*) outside rcdml/distributed",
     lambda p: not p.startswith(DISTRIBUTED), reads_launch_env),
    ("run file names outside rcdml/rundir.py", lambda p: p != RUN_DIR, names_run_files),
    ("torch.load outside rcdml/checkpoint_file.py", lambda p: p != READER, reads_checkpoints),
    ("rcdml/deploy importing rcdml.engine", lambda p: p.startswith("rcdml/deploy/"), imports_engine),
]


def _sources(rev: str | None) -> dict[str, str]:
    """{path: source} of every module under rcdml/, in the work tree or at git revision ``rev``."""
    if rev is None:
        out = {}
        for folder, _, files in os.walk(os.path.join(ROOT, "rcdml")):
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    out[os.path.relpath(path, ROOT)] = open(path).read()
        return out
    git = ["git", "-C", ROOT]
    names = subprocess.run([*git, "ls-tree", "-r", "--name-only", rev, "rcdml"], check=True,
                           capture_output=True, text=True).stdout.split()
    return {n: subprocess.run([*git, "show", f"{rev}:{n}"], check=True, capture_output=True,
                              text=True).stdout for n in names if n.endswith(".py")}


def facts(sources: dict[str, str]) -> dict[str, list[str]]:
    """{fact: offending modules}, plus the trainer's length."""
    trees = {path: ast.parse(src) for path, src in sources.items()}
    found = {name: sorted(p for p, tree in trees.items() if applies(p) and breaks(tree))
             for name, applies, breaks in FACTS}
    found["functions calling torch.load (one reader)"] = loaders(sources)
    lines = sources.get(TRAINER, "").count("\n")
    found[f"{TRAINER} lines (< {TRAINER_MAX_LINES})"] = [] if lines < TRAINER_MAX_LINES else [str(lines)]
    found["_trainer_lines"] = [str(lines)]
    return found


def _cell(offenders: list[str]) -> str:
    return "ok" if not offenders else f"{len(offenders)}: " + ", ".join(
        o.removeprefix("rcdml/") for o in offenders)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", metavar="REV", help="also show the facts at git revision REV")
    args = parser.parse_args(argv)
    now = facts(_sources(None))
    columns = [("now", now)]
    if args.before:
        columns.insert(0, (f"at {args.before}", facts(_sources(args.before))))
    for name in [k for k in now if not k.startswith("_")]:
        print(name)
        for title, table in columns:
            cell = _cell(table[name]) if not name.startswith(TRAINER) else table["_trainer_lines"][0]
            print(f"  {title:<14} {cell}")
    failed = [k for k, v in now.items() if not k.startswith("_") and v and not k.startswith("functions")]
    return 1 if failed or len(now["functions calling torch.load (one reader)"]) > 1 else 0


if __name__ == "__main__":
    sys.exit(main())
