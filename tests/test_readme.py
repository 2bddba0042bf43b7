"""The README's commands stay the ones CI and users actually run."""
from __future__ import annotations

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def readme_commands() -> list[str]:
    with open(os.path.join(ROOT, "README.md")) as f:
        blocks = re.findall(r"```bash\n(.*?)```", f.read(), flags=re.S)
    return [line for block in blocks for line in block.splitlines() if line.strip()]


def test_ci_runs_the_readme_test_command():
    test_lines = [c for c in readme_commands() if "pytest" in c]
    assert len(test_lines) == 1
    command = test_lines[0].split("&&")[-1].strip()
    with open(os.path.join(ROOT, ".ci", "run")) as f:
        ci_lines = [line.strip() for line in f]
    assert command in ci_lines


def test_quick_start_trains_digits_from_a_fresh_environment():
    first = readme_commands()[0]
    assert first.startswith("python3 -m venv")
    assert "pip install -e ." in first
    assert first.endswith("python launch/train.py configs/digits.yaml")
