"""model.pretrained: torchvision's own state_dicts, plain backbone state_dicts and rcdml
checkpoints load; anything else is one config error naming the keys. The files are built from
torchvision's constructors here (no download)."""
from __future__ import annotations

import pytest
import torch
from torchvision import models as tvm

from rcdml.config import ConfigError, load_config
from rcdml.models import build_model
from rcdml.models.weights import load_pretrained


def _model(backbone: str, *extra: str):
    return build_model(load_config(None, [f"model.backbone={backbone}", "model.embedding_size=8",
                                          *extra]).model)


def _same(module, state, prefix=""):
    own = module.state_dict()
    for key, value in state.items():
        if not key.startswith(("fc.", "aux1.", "aux2.")):
            assert torch.equal(own[prefix + key], value), key


@pytest.mark.parametrize("name, build", [
    ("resnet18", lambda: tvm.resnet18(weights=None)),
    ("resnet50", lambda: tvm.resnet50(weights=None)),
    ("googlenet", lambda: tvm.googlenet(weights=None, aux_logits=True, init_weights=True)),
])
def test_torchvision_state_dict_loads_into_the_trunk(tmp_path, name, build):
    net = build()
    path = tmp_path / f"{name}.pth"
    torch.save(net.state_dict(), path)
    model = _model(name)
    assert "loaded the backbone" in load_pretrained(model, str(path))
    trunk = {k: v for k, v in net.state_dict().items() if not k.startswith(("fc.", "aux1.", "aux2."))}
    loaded = model.backbone.state_dict()
    assert sum(v.numel() for v in loaded.values()) == sum(v.numel() for v in trunk.values())
    if name.startswith("resnet"):
        assert torch.equal(loaded["0.weight"], trunk["conv1.weight"])
        assert torch.equal(loaded["7.1.bn2.bias"], trunk["layer4.1.bn2.bias"])
    else:
        _same(model.backbone, trunk)


def test_rcdml_checkpoint_gives_backbone_and_head_only_when_sizes_match(tmp_path):
    source = _model("resnet18")
    path = tmp_path / "best.pt"
    torch.save({"model": source.state_dict(), "epoch": 3}, path)
    same = _model("resnet18")
    assert "and the embedding head" in load_pretrained(same, str(path))
    _same(same, source.state_dict())
    other = _model("resnet18", "model.embedding_size=4")
    assert "head starts from a fresh initialisation" in load_pretrained(other, str(path))
    _same(other.backbone, source.backbone.state_dict())


def test_mismatch_and_non_state_dict_are_one_line_config_errors(tmp_path):
    path = tmp_path / "r18.pth"
    torch.save(tvm.resnet18(weights=None).state_dict(), path)
    with pytest.raises(ConfigError) as e:
        load_pretrained(_model("resnet50"), str(path))
    assert "model.pretrained" in str(e.value) and "\n" not in str(e.value)
    text = tmp_path / "notes.pth"
    text.write_text("not weights")
    with pytest.raises(ConfigError) as e:
        load_pretrained(_model("resnet18"), str(text))
    assert "\n" not in str(e.value) and "weights_only=False" not in str(e.value)
    pickled = tmp_path / "object.pth"
    torch.save({"weights": object.__new__(torch.nn.Identity)}, pickled)
    with pytest.raises(ConfigError) as e:
        load_pretrained(_model("resnet18"), str(pickled))
    assert "refused" in str(e.value) and "weights_only=False" not in str(e.value)
