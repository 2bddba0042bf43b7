"""BN-Inception trunk: shapes, size, checkpoint naming and loading (nothing is downloaded)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from rcdml.models.bn_inception import IMAGENET_URL, BNInception, bn_inception
from rcdml.models.weights import adapt_state_dict
from rcdml.models.registry import backbone_spec


@pytest.fixture(scope="module")
def net() -> BNInception:
    torch.manual_seed(0)
    return BNInception().eval()


def _legacy_checkpoint(model: nn.Module) -> dict[str, torch.Tensor]:
    """A checkpoint in the pretrainedmodels layout: with the 1000-way classifier, without
    ``num_batches_tracked`` and with BatchNorm vectors stored as (1, C); non-trivial values."""
    gen = torch.Generator().manual_seed(1)
    ckpt = {}
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        value = torch.rand(value.shape, generator=gen) * 0.1 + (0.5 if key.endswith(
            ("running_var", "_bn.weight")) else 0.0)
        ckpt[key] = value.unsqueeze(0) if "_bn." in key else value
    ckpt["last_linear.weight"] = torch.randn(1000, 1024, generator=gen)
    ckpt["last_linear.bias"] = torch.randn(1000, generator=gen)
    return ckpt


def test_registered_as_bn_inception_backbone():
    spec = backbone_spec("bn_inception")
    assert spec.channels == 1024
    assert spec.input_style == "bn_inception"
    assert spec.build is bn_inception


def test_output_shape_224(net):
    with torch.no_grad():
        out = net(torch.randn(2, 3, 224, 224))
    assert out.shape == (2, 1024, 7, 7)
    assert (out >= 0).all()  # ends in ReLU: no pooling, no classifier


def test_small_input_gives_non_empty_map(net):
    with torch.no_grad():
        out = net(torch.randn(1, 3, 64, 64))
    assert out.shape == (1, 1024, 2, 2)
    assert torch.isfinite(out).all()


def test_odd_grid_at_grid_reduction_is_a_clear_error(net):
    # 200 px leaves a 25x25 grid entering inception_3c, where Caffe's floor-mode stride-2 conv
    # and ceil-mode max pool disagree.
    with pytest.raises(ValueError, match="inception_3c needs an even feature map"):
        with torch.no_grad():
            net(torch.randn(1, 3, 200, 200))


def test_parameter_count(net):
    # From the layer table (69 conv+BN units): convolution weights and biases 10,250,208 plus
    # BatchNorm gamma/beta over 10,016 channels (2 x 10,016 = 20,032). With pretrainedmodels'
    # 1024x1000 classifier (1,025,000 more) this is the 11,295,240 of the full network.
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(convs) == len(bns) == 69
    assert sum(p.numel() for m in convs for p in m.parameters()) == 10_250_208
    assert sum(m.num_features for m in bns) == 10_016
    assert sum(p.numel() for p in net.parameters()) == 10_270_240


def test_state_dict_uses_pretrainedmodels_names(net):
    state = net.state_dict()
    expected_shapes = {
        "conv1_7x7_s2.weight": (64, 3, 7, 7),
        "conv1_7x7_s2.bias": (64,),
        "conv1_7x7_s2_bn.weight": (64,),
        "conv1_7x7_s2_bn.running_mean": (64,),
        "conv2_3x3_reduce.weight": (64, 64, 1, 1),
        "conv2_3x3_bn.running_var": (192,),
        "inception_3a_1x1.weight": (64, 192, 1, 1),
        "inception_3a_double_3x3_reduce_bn.bias": (64,),
        "inception_3a_pool_proj.weight": (32, 192, 1, 1),
        "inception_3c_3x3.weight": (160, 128, 3, 3),
        "inception_4e_double_3x3_2.weight": (256, 256, 3, 3),
        "inception_5a_1x1.weight": (352, 1056, 1, 1),
        "inception_5b_double_3x3_1.weight": (224, 192, 3, 3),
        "inception_5b_pool_proj_bn.running_var": (128,),
    }
    for key, shape in expected_shapes.items():
        assert tuple(state[key].shape) == shape, key
    # Grid-reduction blocks have neither a 1x1 branch nor a pool projection.
    for stage in ("3c", "4e"):
        assert not any(k.startswith((f"inception_{stage}_1x1", f"inception_{stage}_pool_proj"))
                       for k in state)
    # Flat names only (Caffe layer name + tensor), 69 convs x 2 + 69 BNs x 5 tensors.
    assert all(key.count(".") == 1 for key in state)
    assert len(state) == 69 * 2 + 69 * 5
    assert not any(key.startswith("last_linear") for key in state)


def test_strict_round_trip_through_a_file(net, tmp_path):
    path = tmp_path / "bn_inception.pth"
    torch.save(net.state_dict(), path)
    other = BNInception().eval()
    other.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(net(x), other(x))


def test_legacy_checkpoint_loads_strictly(tmp_path):
    model = BNInception()
    ckpt = _legacy_checkpoint(model)
    path = tmp_path / "bn_inception-legacy.pth"
    torch.save(ckpt, path)
    loaded = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(adapt_state_dict(loaded, model), strict=True)
    state = model.state_dict()
    assert torch.equal(state["inception_5b_pool_proj_bn.running_var"],
                       ckpt["inception_5b_pool_proj_bn.running_var"].view(-1))
    assert torch.equal(state["inception_4e_double_3x3_2.weight"],
                       ckpt["inception_4e_double_3x3_2.weight"])
    assert int(state["conv1_7x7_s2_bn.num_batches_tracked"]) == 0


def test_imagenet_weights_come_from_the_pretrainedmodels_url(monkeypatch):
    ckpt = _legacy_checkpoint(BNInception())
    calls = []

    def fake_load(url, **kwargs):
        calls.append((url, kwargs))
        return dict(ckpt)

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fake_load)
    model = bn_inception(imagenet=True)
    assert calls == [(IMAGENET_URL, {"map_location": "cpu", "weights_only": True})]
    assert torch.equal(model.state_dict()["conv2_3x3_bn.weight"],
                       ckpt["conv2_3x3_bn.weight"].view(-1))


def test_random_init_and_backward():
    torch.manual_seed(0)
    model = bn_inception(imagenet=False)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            assert torch.count_nonzero(m.bias) == 0
            fan_out = m.out_channels * m.kernel_size[0] * m.kernel_size[1]
            assert m.weight.std().item() == pytest.approx((2.0 / fan_out) ** 0.5, rel=0.25)
        elif isinstance(m, nn.BatchNorm2d):
            assert torch.equal(m.weight, torch.ones_like(m.weight))
            assert torch.count_nonzero(m.bias) == 0
    model.train()
    model(torch.randn(2, 3, 64, 64)).mean().backward()
    assert all(p.grad is not None for p in model.parameters())
