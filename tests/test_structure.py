"""The package's ownership facts (tools/check_structure.py): launcher environment and collectives
only in rcdml/distributed, run file names only in rcdml/rundir.py, checkpoints read by one
function, deploy/ independent of the training engine, a trainer under 250 lines."""
from __future__ import annotations

import os

from conftest import ROOT, load_worker

check = load_worker(os.path.join(ROOT, "tools", "check_structure.py"))


def test_the_ownership_facts_hold(capsys):
    assert check.main([]) == 0, capsys.readouterr().out


def test_each_rule_finds_what_it_looks_for():
    import ast

    def breaks(rule, src):
        return rule(ast.parse(src))

    assert breaks(check.uses_torch_distributed, "import torch.distributed as dist")
    assert breaks(check.uses_torch_distributed, "import torch\ntorch.distributed.barrier()")
    assert breaks(check.reads_launch_env, "import os\nos.environ.get('LOCAL_WORLD_SIZE')")
    assert not breaks(check.reads_launch_env, "'''RANK in a docstring'''")
    assert breaks(check.names_run_files, "path = os.path.join(d, 'metrics.jsonl')")
    assert breaks(check.names_run_files, "name = f'epoch_{e:03d}.png'")
    assert breaks(check.reads_checkpoints, "import torch\ntorch.load(p, weights_only=True)")
    assert breaks(check.imports_engine, "from rcdml.engine.learner import amp_dtype")
    assert check.loaders({"m.py": "import torch\ndef f(p):\n    return torch.load(p)\n"}) == ["m.py:f"]
