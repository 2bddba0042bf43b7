"""torchvision transforms: normalisation per input style, seeded training augmentation."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from rcdml.data.geometry import train_geometry
from rcdml.data.transforms import TrainTransform, eval_transform
from rcdml.models.inputs import IMAGENET_MEAN, IMAGENET_STD, Normalization, Normalize, normalization


def _image(w=48, h=48, seed=0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def test_imagenet_normalisation_equals_torchvision_normalize():
    x = T.ToTensor()(_image())
    expected = T.Normalize(IMAGENET_MEAN, IMAGENET_STD)(x)
    assert torch.allclose(Normalize(normalization("imagenet"))(x), expected, atol=1e-5)


def test_bn_inception_input_is_bgr_255_minus_the_mean():
    image = _image()
    pixels = np.asarray(image).astype(np.float32)
    expected = np.stack([pixels[..., 2] - 104.0, pixels[..., 1] - 117.0, pixels[..., 0] - 128.0])
    out = Normalize(normalization("bn_inception"))(T.ToTensor()(image))
    assert np.allclose(out.numpy(), expected, atol=1e-3)


def test_timm_input_style_is_the_pretrained_configs():
    """The tag decides: DINO's ViT-S/16 was trained on ImageNet-standardised inputs, timm's
    default ViT-S/16 weights (augreg) on [-1, 1]; both resize bicubically."""
    dino = normalization("timm:vit_small_patch16_224.dino")
    assert dino == Normalization(
        False, tuple(255 * m for m in IMAGENET_MEAN), tuple(255 * s for s in IMAGENET_STD), "bicubic")
    augreg = normalization("timm:vit_small_patch16_224")
    assert (augreg.mean, augreg.std, augreg.interpolation) == ((127.5,) * 3, (127.5,) * 3, "bicubic")
    assert normalization("imagenet").interpolation == "bilinear"


def test_timm_eval_transform_resizes_with_the_models_filter():
    image = _image(60, 40)
    out = eval_transform(_cfg(), normalization("timm:vit_small_patch16_224"))(image)
    resized = T.CenterCrop(_cfg().image_size)(
        T.Resize(_cfg().resize_size, T.InterpolationMode.BICUBIC, antialias=True)(image))
    torch.testing.assert_close(out, T.ToTensor()(resized) * 2 - 1, atol=1e-5, rtol=0)
    bilinear = eval_transform(_cfg(), normalization("imagenet"))(image)
    assert not torch.allclose(bilinear * torch.tensor(IMAGENET_STD).view(3, 1, 1)
                              + torch.tensor(IMAGENET_MEAN).view(3, 1, 1), (out + 1) / 2, atol=1e-3)


def test_unknown_input_style_is_an_error():
    with pytest.raises(ValueError, match="bn_inception"):
        normalization("caffe")


def _cfg(**kw):
    base = dict(image_size=24, resize_size=28, crop_scale=[1.0, 1.0], flip=True)
    base.update(kw)
    return SimpleNamespace(**base)


def test_train_transform_at_full_scale_resizes_the_whole_image_and_flips_by_seed():
    image = _image()
    transform = TrainTransform(_cfg(), normalization("imagenet"))
    plain = T.Compose([T.Resize((24, 24)), T.ToTensor(),
                       T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])(image)
    flips = 0
    for seed in range(8):
        out = transform(image, seed)
        flipped = train_geometry(48, 48, seed, (1.0, 1.0), True).flip
        flips += flipped
        assert torch.allclose(out, plain.flip(-1) if flipped else plain, atol=1e-5)
    assert 0 < flips < 8


def test_train_transform_depends_on_the_seed_only():
    image = _image(90, 60)
    transform = TrainTransform(_cfg(crop_scale=[0.2, 1.0]), normalization("imagenet"))
    assert torch.equal(transform(image, 11), transform(image, 11))
    assert not torch.equal(transform(image, 11), transform(image, 12))
    torch.manual_seed(0)
    a = transform(image, 3)
    torch.manual_seed(1)
    assert torch.equal(a, transform(image, 3)), "the global torch RNG leaked into the crop"


def test_eval_transform_shape_and_range():
    out = eval_transform(_cfg(), normalization("bn_inception"))(_image(60, 40))
    assert out.shape == (3, 24, 24) and out.dtype == torch.float32
    assert out.min() >= -128 and out.max() <= 255 - 104
