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

from rcdml.log import configure_logging

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The library only adds a NullHandler; the test session is a program, and configures logging as
# the rcdml-* entry points do, so tests see the lines a user would.
configure_logging()
# The Omniglot archive is not part of the repository: RCDML_OMNIGLOT names it, else the
# project's shared data folder next to the clone is used.
OMNIGLOT_ENV = "RCDML_OMNIGLOT"
OMNIGLOT_ARCHIVE = os.environ.get(OMNIGLOT_ENV) or os.path.join(ROOT, "..", "shared", "data",
                                                                 "omniglot.tar.gz")
# The Stanford Cars-196 crops (cars196/images/<NNN>/<file>.jpg), likewise.
CARS_ENV = "RCDML_CARS"
CARS_ARCHIVE = os.environ.get(CARS_ENV) or os.path.join(ROOT, "..", "shared", "data",
                                                         "cars196.tar.gz")


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


def require_archive(path: str, env: str, what: str) -> None:
    """Skip the test with the reason when ``path`` is missing, except under CI (``CI=true``),
    where it fails: CI has the archives, so a skip there would hide lost coverage."""
    if not os.path.isfile(path):
        reason = f"{what} archive not found at {path}; set {env} to its .tar.gz to run this test"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the {what} tests: {reason}")
        pytest.skip(reason)


def extract_cars(target, classes: Sequence[int], per_class: int) -> str:
    """The first ``per_class`` images (by file name) of each Cars-196 class in ``classes``
    (official numbers), extracted under ``target``; returns the ``cars196/images`` folder, whose
    sub-folders are the classes."""
    require_archive(CARS_ARCHIVE, CARS_ENV, "Cars-196")
    wanted = {f"cars196/images/{c:03d}/" for c in classes}
    with tarfile.open(CARS_ARCHIVE) as archive:
        by_class: dict[str, list[tarfile.TarInfo]] = {}
        for member in archive.getmembers():
            folder = os.path.dirname(member.name) + "/"
            if member.isfile() and folder in wanted:
                by_class.setdefault(folder, []).append(member)
        chosen = [m for members in by_class.values()
                  for m in sorted(members, key=lambda m: m.name)[:per_class]]
        archive.extractall(target, members=chosen, filter="data")
    return os.path.join(str(target), "cars196", "images")


@pytest.fixture(scope="session")
def omniglot_root(tmp_path_factory):
    """The Omniglot archive extracted once per test session; the ``omniglot`` folder. Without
    the archive the test is skipped with the reason, except under CI (``CI=true``), where it
    fails: CI has the archive, so a skip there would hide lost coverage.
    Removed at the end: 32,460 files left in pytest's temporary folders slow later sessions."""
    require_archive(OMNIGLOT_ARCHIVE, OMNIGLOT_ENV, "Omniglot")
    target = tmp_path_factory.mktemp("omniglot")
    with tarfile.open(OMNIGLOT_ARCHIVE) as archive:
        archive.extractall(target, filter="data")
    yield str(target / "omniglot")
    shutil.rmtree(target, ignore_errors=True)


@pytest.fixture(autouse=True)
def _stop_handlers():
    """rcdml-train's ``main`` keeps its stop handlers until the process exits; a test that calls
    it in-process gets pytest's handlers back, and no stop request carries over to the next."""
    import signal

    from rcdml.distributed import stop

    kept = {s: signal.getsignal(s) for s in stop.STOP_SIGNALS}
    yield
    stop.restore(kept)
