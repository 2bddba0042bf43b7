"""model.pretrained: torchvision's own state_dicts, plain backbone state_dicts and rcdml
checkpoints load; anything else is one config error naming the keys. The files are built from
torchvision's constructors here (no download)."""
from __future__ import annotations

import pytest
import torch
from torchvision import models as tvm

from rcdml.checkpoint_file import CheckpointReadError
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


def test_rcdml_checkpoint_gives_gems_exponent_with_the_head(tmp_path):
    source = _model("resnet18", "model.pooling=gem")
    with torch.no_grad():
        source.pool.p.fill_(4.5)
    torch.save({"model": source.state_dict()}, tmp_path / "best.pt")
    tuned = _model("resnet18", "model.pooling=gem")
    assert "and the embedding head" in load_pretrained(tuned, str(tmp_path / "best.pt"))
    assert tuned.pool.p.item() == 4.5
    plain = _model("resnet18", "model.pooling=avg")
    assert "head starts from a fresh initialisation" in load_pretrained(plain, str(tmp_path / "best.pt"))


def test_mismatch_and_non_state_dict_are_one_line_config_errors(tmp_path):
    path = tmp_path / "r18.pth"
    torch.save(tvm.resnet18(weights=None).state_dict(), path)
    with pytest.raises(ConfigError) as e:
        load_pretrained(_model("resnet50"), str(path))
    assert "model.pretrained" in str(e.value) and "\n" not in str(e.value)
    text = tmp_path / "notes.pth"
    text.write_text("not weights")
    with pytest.raises(CheckpointReadError) as e:
        load_pretrained(_model("resnet18"), str(text))
    assert "\n" not in str(e.value) and "weights_only=False" not in str(e.value)
    pickled = tmp_path / "object.pth"
    torch.save({"weights": object.__new__(torch.nn.Identity)}, pickled)
    with pytest.raises(CheckpointReadError) as e:
        load_pretrained(_model("resnet18"), str(pickled))
    assert "refused" in str(e.value) and "weights_only=False" not in str(e.value)


# A 2-block ViT-Ti of width 32 on 16 px inputs: the DINO ViT layout (cls_token, pos_embed,
# patch_embed.proj, blocks.N.*, norm), as tiny as it gets.
_VIT = dict(img_size=16, patch_size=4, depth=2, embed_dim=32, num_heads=2)
_VIT_ARGS = ("timm:vit_tiny_patch16_224", "model.pooling=cls",
             "model.timm_kwargs={img_size: 16, patch_size: 4, depth: 2, embed_dim: 32, num_heads: 2}")


def _vit(**kwargs):
    import timm

    torch.manual_seed(7)
    return timm.create_model("vit_tiny_patch16_224", **{**_VIT, **kwargs})


def test_dino_release_layout_loads_strictly(tmp_path):
    """dino_deitsmall16_pretrain.pth is a headless VisionTransformer state_dict."""
    state = _vit(num_classes=0).state_dict()
    assert {"cls_token", "pos_embed", "patch_embed.proj.weight", "blocks.0.norm1.weight",
            "norm.bias"} <= state.keys() and not any(k.startswith("head.") for k in state)
    torch.save(state, tmp_path / "dino.pth")
    model = _model(*_VIT_ARGS)
    assert load_pretrained(model, str(tmp_path / "dino.pth")) == (
        f"model.pretrained: loaded the backbone from {tmp_path / 'dino.pth'}")
    _same(model.backbone, state)


def test_dino_training_checkpoint_loads_its_teacher(tmp_path):
    """DINO's checkpoint.pth: student and teacher, each a DDP-wrapped backbone + DINO head."""
    teacher = _vit(num_classes=0).state_dict()
    projection = {"head.mlp.0.weight": torch.randn(64, 32), "head.last_layer.weight_g": torch.ones(5, 1)}

    def wrapped(backbone):
        return {**{f"module.backbone.{k}": v for k, v in backbone.items()},
                **{f"module.{k}": v for k, v in projection.items()}}

    student = {k: torch.zeros_like(v) for k, v in teacher.items()}
    torch.save({"student": wrapped(student), "teacher": wrapped(teacher), "epoch": 100},
               tmp_path / "checkpoint.pth")
    model = _model(*_VIT_ARGS)
    assert "head starts from a fresh initialisation" in load_pretrained(model, str(tmp_path / "checkpoint.pth"))
    _same(model.backbone, teacher)


def test_timm_state_dict_with_its_classifier_loads(tmp_path):
    state = _vit(num_classes=10).state_dict()
    assert "head.weight" in state
    torch.save(state, tmp_path / "vit.pth")
    model = _model(*_VIT_ARGS)
    load_pretrained(model, str(tmp_path / "vit.pth"))
    _same(model.backbone, {k: v for k, v in state.items() if not k.startswith("head.")})
    import timm

    resnet = timm.create_model("resnet10t", num_classes=7)
    torch.save(resnet.state_dict(), tmp_path / "resnet.pth")
    cnn = _model("timm:resnet10t")
    load_pretrained(cnn, str(tmp_path / "resnet.pth"))
    _same(cnn.backbone, {k: v for k, v in resnet.state_dict().items() if not k.startswith("fc.")})


def test_a_file_of_another_vit_names_its_keys_in_one_line(tmp_path):
    torch.save(_vit(num_classes=0, depth=3).state_dict(), tmp_path / "deeper.pth")
    with pytest.raises(ConfigError) as e:
        load_pretrained(_model(*_VIT_ARGS), str(tmp_path / "deeper.pth"))
    message = str(e.value)
    assert "\n" not in message and "does not fit the backbone" in message
    assert "unexpected keys ['blocks.2.attn.proj.bias'" in message
    torch.save(tvm.resnet18(weights=None).state_dict(), tmp_path / "r18.pth")
    with pytest.raises(ConfigError) as e:
        load_pretrained(_model(*_VIT_ARGS), str(tmp_path / "r18.pth"))
    assert "missing keys ['blocks.0.attn.proj.bias'" in str(e.value) and "\n" not in str(e.value)


def test_vit_position_embeddings_are_resampled_to_another_img_size(tmp_path):
    """A ViT file of a 16 px model (4x4 patches) loads into a 24 px one (6x6 patches) through
    timm's checkpoint filter: the class token's embedding is kept, the grid's is resampled."""
    from timm.layers import resample_abs_pos_embed

    state = _vit(num_classes=0).state_dict()
    torch.save(state, tmp_path / "dino16.pth")
    args = [a.replace("img_size: 16", "img_size: 24") for a in _VIT_ARGS]
    model = _model(*args, "data.image_size=24")
    load_pretrained(model, str(tmp_path / "dino16.pth"))
    loaded = model.backbone.pos_embed
    assert loaded.shape == (1, 1 + 36, 32)
    assert torch.equal(loaded[:, :1], state["pos_embed"][:, :1])
    expected = resample_abs_pos_embed(state["pos_embed"], new_size=(6, 6), old_size=(4, 4),
                                      num_prefix_tokens=1)
    torch.testing.assert_close(loaded, expected)
    _same(model.backbone, {k: v for k, v in state.items() if k != "pos_embed"})
