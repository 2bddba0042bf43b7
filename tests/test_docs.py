"""The documentation holds: the mkdocs site builds strictly, and every command block of README.md
and docs/*.md runs as printed, in order.

Every command is parsed: its script or console entry point exists, its recipe and every
``key=value`` pass the config loader, a path under ``runs/`` was written by an earlier command of
the same page, and no run starts in another run's ``output_dir`` (which exits 2) unless it
resumes or overwrites. The quick ones (folders, embedding, indexing, searching: seconds each) are
also run as printed, in order, in a fresh copy of the repository holding a short stand-in of the
quick start's run; the long ones (installs, training, launchers for GPUs and clusters: the quick
start alone takes about 2 minutes on a 2-core CPU) are only parsed. The console examples
(``$ command`` followed by its output) are run, in order, in a fresh copy of the repository, and
must print what the page shows."""
from __future__ import annotations

import glob
import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest

from rcdml.config import ConfigError, load_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = ["README.md"] + sorted(os.path.relpath(p, ROOT)
                               for p in glob.glob(os.path.join(ROOT, "docs", "*.md")))
QUICK_START = ("configs/digits.yaml", ())

# Not -q: mkdocs counts the warnings that fail --strict through its log, which -q silences.
MKDOCS_BUILD = [sys.executable, "-m", "mkdocs", "build", "--strict"]
# The program each launcher script or console script runs.
PROGRAMS = {
    "launch/train.py": "train", "launch/slurm/train.sbatch": "train", "rcdml-train": "train",
    "launch/evaluate.py": "eval", "launch/slurm/evaluate.sbatch": "eval", "rcdml-eval": "eval",
    "launch/embed.py": "embed", "rcdml-embed": "embed", "rcdml-export": "export",
    "rcdml-index": "index", "rcdml-search": "search", "rcdml-prepare": "prepare",
}


def read(page: str) -> str:
    with open(os.path.join(ROOT, page)) as f:
        return f.read()


def blocks(page: str) -> list[tuple[str, str]]:
    """(info string, text) of each fenced block of the page."""
    found, info, lines = [], None, []
    for line in read(page).splitlines():
        if line.startswith("```"):
            if info is None:
                info, lines = line[3:].strip(), []
            else:
                found.append((info, "\n".join(lines) + "\n"))
                info = None
        elif info is not None:
            lines.append(line)
    return found


def commands(page: str) -> list[str]:
    """The commands of the page's ``bash`` blocks, in order: continuation lines joined, comments
    dropped, ``&&`` chains split."""
    found = []
    for block in (text for info, text in blocks(page) if info == "bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            found += [part.strip() for part in line.split("&&") if part.strip()]
    return found


class Page:
    """What the commands of one page have written so far: run directories (with the recipe and
    overrides that made them) and other folders under ``runs/``."""

    def __init__(self, page: str):
        self.page = page
        # Every page after README starts where the quick start left off.
        self.runs = {} if page == "README.md" else {"runs/digits": QUICK_START}
        self.folders: set[str] = set()

    def fail(self, command: str, why: str):
        pytest.fail(f"{self.page}: `{command}`: {why}")

    def produced(self, path: str) -> bool:
        path = path.rstrip("/")
        return any(path == d or path.startswith(d + "/") for d in [*self.runs, *self.folders])

    def require(self, command: str, path: str):
        if path.startswith("runs/") and not self.produced(path):
            self.fail(command, f"{path} is not written by an earlier command of the page")

    def recipe(self, command: str, config: str) -> tuple[str, tuple[str, ...]]:
        """(recipe file, overrides) behind CONFIG: a file of the repository or a run's
        config.yaml."""
        if os.path.isfile(os.path.join(ROOT, config)):
            return os.path.join(ROOT, config), ()
        run = os.path.dirname(config)
        if os.path.basename(config) == "config.yaml" and run in self.runs:
            base, overrides = self.runs[run]
            return os.path.join(ROOT, base), tuple(overrides)
        self.fail(command, f"{config} is neither a file of the repository nor a run's config")

    def check(self, command: str):
        words = shlex.split(command)
        entry = next((i for i, w in enumerate(words) if w in PROGRAMS), None)
        if entry is None:
            return
        if words[entry].startswith(("launch/", "configs/")):
            assert os.path.isfile(os.path.join(ROOT, words[entry])), words[entry]
        program, args = PROGRAMS[words[entry]], words[entry + 1:]
        plain = [a for a in args if "=" not in a and not a.startswith("-")]
        settings = [a for a in args if "=" in a and not a.startswith("-")]
        try:
            getattr(self, program)(command, plain, settings)
        except ConfigError as e:
            self.fail(command, f"config error: {e}")

    def train(self, command, plain, settings):
        base, overrides = self.recipe(command, plain[0])
        cfg = load_config(base, [*overrides, *settings])
        continues = cfg.train.resume != "none" or cfg.train.overwrite
        if cfg.output_dir in self.runs and not continues:
            self.fail(command, f"{cfg.output_dir} holds another run (exit 2): give the command "
                      "its own output_dir, or train.resume=auto / train.overwrite=true")
        self.runs[cfg.output_dir] = (os.path.relpath(base, ROOT), (*overrides, *settings))

    def with_checkpoint(self, command, plain, settings, cls=None):
        from rcdml.deploy.settings import split_args

        args, rest = split_args(cls, settings) if cls else (None, settings)
        checkpoint = [s.split("=", 1)[1] for s in rest if s.startswith("checkpoint=")]
        rest = [s for s in rest if not s.startswith("checkpoint=")]
        for path in checkpoint or [args.checkpoint]:
            self.require(command, path)
        base, overrides = self.recipe(command, plain[0])
        load_config(base, [*overrides, *rest])
        return args

    def eval(self, command, plain, settings):
        self.with_checkpoint(command, plain, settings)

    def embed(self, command, plain, settings):
        from rcdml.deploy.settings import EmbedArgs

        args = self.with_checkpoint(command, plain, settings, EmbedArgs)
        self.folders.add(args.out.rstrip("/"))

    def export(self, command, plain, settings):
        from rcdml.deploy.settings import ExportArgs

        self.with_checkpoint(command, plain, settings, ExportArgs)

    def index(self, command, plain, settings):
        from rcdml.cli.index import COMMAND
        from rcdml.deploy.settings import IndexArgs, parse_command

        source, args = parse_command(IndexArgs, [*plain, *settings], "EMBEDDINGS", "", COMMAND)
        self.require(command, source)
        self.folders.add(args.out or source.rstrip("/") + "/index")

    def search(self, command, plain, settings):
        from rcdml.cli.search import COMMAND
        from rcdml.deploy.settings import SearchArgs, parse_command

        index, args = parse_command(SearchArgs, [*plain, *settings], "INDEX", "", COMMAND)
        for path in (index, args.queries, args.checkpoint):
            if path:
                self.require(command, path)

    def prepare(self, command, plain, settings):
        from rcdml.data.datasets import dataset_names

        assert plain[0] in dataset_names(), command


@pytest.mark.parametrize("page", PAGES)
def test_command_blocks_parse_in_order(page):
    state = Page(page)
    for command in commands(page):
        state.check(command)


def test_the_checks_catch_a_second_run_into_the_same_output_dir():
    state = Page("README.md")
    state.check("python launch/train.py configs/digits.yaml")
    with pytest.raises(pytest.fail.Exception, match="holds another run"):
        state.check("python launch/train.py configs/digits.yaml train.epochs=5")
    state.check("python launch/train.py configs/digits.yaml train.resume=auto")
    with pytest.raises(pytest.fail.Exception, match="not written by an earlier command"):
        state.check("rcdml-index runs/other/embeddings")
    with pytest.raises(pytest.fail.Exception, match="unknown key"):
        state.check("rcdml-embed runs/digits/config.yaml checkpoint=runs/digits/best.pt "
                    "input=x out=y train.epochz=3")


def console_examples(page: str) -> list[tuple[str, str]]:
    """(command, the output shown under it) of each ``$ command`` in the page's plain blocks."""
    examples = []
    for block in (text for info, text in blocks(page) if info in ("", "console")):
        lines = block.strip("\n").splitlines()
        for i, line in enumerate(lines):
            if line.startswith("$ "):
                shown = []
                for out in lines[i + 1:]:
                    if out.startswith("$ "):
                        break
                    shown.append(out)
                examples.append((line[2:], "\n".join(shown)))
    return examples


def fresh_copy(clone) -> dict[str, str]:
    """Copy the repository's tracked files to ``clone``; the environment that runs its code."""
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                             check=True).stdout.decode().split("\0")
    for name in filter(None, tracked):
        if os.path.isfile(os.path.join(ROOT, name)):
            os.makedirs(clone / os.path.dirname(name), exist_ok=True)
            shutil.copy2(os.path.join(ROOT, name), clone / name)
    return {**os.environ, "PYTHONPATH": str(clone), "OMP_NUM_THREADS": "1"}


@pytest.mark.slow
def test_console_examples_print_what_the_docs_show(tmp_path):
    examples = [e for page in PAGES for e in console_examples(page)]
    assert examples, "no console example found"
    clone = tmp_path / "clone"
    env = fresh_copy(clone)
    for command, shown in examples:
        words = shlex.split(command)
        if words[0] == "python":
            words[0] = sys.executable
        result = subprocess.run(words, cwd=clone, env=env, capture_output=True, text=True,
                                timeout=300)
        printed = (result.stdout + result.stderr).strip().splitlines()
        # "..." in the docs stands for the rest of the line.
        for want in shown.splitlines():
            prefix = want.split("...")[0].rstrip() if "..." in want else want
            assert any(line.startswith(prefix) for line in printed), (command, want, printed)


# What a quick command may be: shell folder work and the commands that use a trained model.
QUICK_SHELL = ("mkdir", "cp")
QUICK_PROGRAMS = ("embed", "index", "search")
# The quick start's run, shortened: the same recipe and run directory, one epoch.
QUICK_START_STAND_IN = ["launch/train.py", "configs/digits.yaml", "train.epochs=1",
                        "eval.at_start=false", "train.progress=false"]


def quick(command: str) -> bool:
    words = shlex.split(command)
    return words[0] in QUICK_SHELL or PROGRAMS.get(words[0]) in QUICK_PROGRAMS


@pytest.mark.slow
def test_quick_commands_run_as_printed(tmp_path):
    # The pages that use a trained model; elsewhere the shell commands work on the reader's files.
    pages = [page for page in PAGES
             if any(PROGRAMS.get(shlex.split(c)[0]) in QUICK_PROGRAMS for c in commands(page))]
    assert "README.md" in pages and "docs/search.md" in pages, pages
    base = tmp_path / "base"
    env = fresh_copy(base)
    trained = subprocess.run([sys.executable, *QUICK_START_STAND_IN], cwd=base, env=env,
                             capture_output=True, text=True, timeout=600)
    assert trained.returncode == 0, trained.stderr[-3000:]
    bin_dir = os.path.dirname(sys.executable)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    for page in pages:
        # Each page starts from the quick start's run, as its readers do.
        folder = tmp_path / page.replace("/", "_")
        shutil.copytree(base, folder, symlinks=True)
        ran = []
        for command in filter(quick, commands(page)):
            result = subprocess.run(["bash", "-c", command], cwd=folder, env=env,
                                    capture_output=True, text=True, timeout=300)
            assert result.returncode == 0, (page, command, result.stdout + result.stderr)
            ran.append(command)
        # What the page says the commands write.
        for path in ("runs/digits/embeddings/embeddings.npy", "runs/digits/embeddings/index/index.faiss",
                     "runs/digits/embeddings/index/search/results.json",
                     "runs/digits/search_7/results.json", "runs/digits/search_7/grid.png"):
            assert (folder / path).is_file(), (page, path)


def test_site_builds_strictly(tmp_path):
    result = subprocess.run([*MKDOCS_BUILD, "-d", str(tmp_path / "site")], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "site" / "index.html").is_file()


def test_a_broken_link_fails_the_strict_build(tmp_path):
    shutil.copytree(os.path.join(ROOT, "docs"), tmp_path / "docs")
    shutil.copy(os.path.join(ROOT, "mkdocs.yml"), tmp_path / "mkdocs.yml")
    with open(tmp_path / "docs" / "index.md", "a") as f:
        f.write("\n[gone](no_such_page.md)\n")
    result = subprocess.run([*MKDOCS_BUILD, "-d", str(tmp_path / "site")], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "no_such_page.md" in result.stderr


def test_readme_links_every_docs_page_it_depends_on():
    readme = read("README.md")
    for link in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert os.path.isfile(os.path.join(ROOT, link)), link
    assert len(readme.splitlines()) < 200
