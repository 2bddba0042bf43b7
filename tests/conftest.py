"""Shared test helpers: run a script under torchrun (gloo, CPU) from a test."""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import tarfile
import sys
from typing import Sequence

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OMNIGLOT_ARCHIVE = os.path.join(ROOT, "..", "shared", "data", "omniglot.tar.gz")


def run_torchrun(script: str, nproc: int, args: Sequence[str] = (), timeout: float = 300,
                 env: dict[str, str] | None = None, extra: Sequence[str] = ()) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node=nproc script args`` with the repo importable.

    Returns the completed process (stdout/stderr captured as text); raises on timeout.
    """
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = ROOT + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env.setdefault("OMP_NUM_THREADS", "1")
    full_env.update(env or {})
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={nproc}", *extra, script, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env, cwd=ROOT)


def load_worker(path: str):
    """Import a torchrun worker script (not collected by pytest) as a module, by its path."""
    spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(path))[0], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def torchrun():
    """The :func:`run_torchrun` helper, as a fixture."""
    return run_torchrun


@pytest.fixture(scope="session")
def omniglot_root(tmp_path_factory):
    """../shared/data/omniglot.tar.gz extracted once per test session; the ``omniglot`` folder.
    Removed at the end: 32,460 files left in pytest's temporary folders slow later sessions."""
    target = tmp_path_factory.mktemp("omniglot")
    with tarfile.open(OMNIGLOT_ARCHIVE) as archive:
        archive.extractall(target, filter="data")
    yield str(target / "omniglot")
    shutil.rmtree(target, ignore_errors=True)
