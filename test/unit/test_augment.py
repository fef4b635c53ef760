"""Training-image augmentation: crops and flips, drawn from the run's generator."""
from __future__ import annotations

from pathlib import Path

from dff_lifecycle.core.config import ConfigError, load_layer_config, load_model_config
from dff_lifecycle.core.data.augment import augment, random_affine, random_crop, random_flip
import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


def images(n=8):
    return torch.arange(n * 2 * 5 * 5, dtype=torch.float32).view(n, 2, 5, 5)


def test_a_crop_is_a_shifted_window_of_the_zero_padded_image():
    x = images()
    out = random_crop(x, 2, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(len(x)):
        assert any(torch.equal(out[i], padded[i, :, t:t + 5, c:c + 5])
                   for t in range(5) for c in range(5))
    assert torch.equal(random_crop(x, 0, torch.Generator()), x)


def test_a_flip_mirrors_about_half_the_images_and_nothing_else():
    x = torch.rand(200, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    out = random_flip(x, torch.Generator().manual_seed(0))
    flipped = [torch.equal(o, i.flip(-1)) for o, i in zip(out, x)]
    kept = [torch.equal(o, i) for o, i in zip(out, x)]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 70 < sum(flipped) < 130


def test_a_rotation_by_a_right_angle_turns_the_image_and_keeps_its_mass():
    x = torch.zeros(1, 1, 8, 8)
    x[0, 0, 1, 2:6] = 1.0                             # a bar near the top edge
    # +-90 degrees at most, and the draw picks the angle: see which way it turned
    out = random_affine(x, 90.0, 0.0, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    assert abs(out.sum().item() - x.sum().item()) < 1.0
    assert torch.equal(random_affine(x, 0.0, 0.0, torch.Generator()), x)
    # a full +-180 with no scaling keeps a centred disc's mass and radius
    yy, xx = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing='ij')
    disc = (((yy - 7.5) ** 2 + (xx - 7.5) ** 2) < 16).float().view(1, 1, 16, 16).repeat(4, 1, 1, 1)
    turned = random_affine(disc, 180.0, 0.0, torch.Generator().manual_seed(1))
    assert torch.allclose(turned.sum((1, 2, 3)), disc.sum((1, 2, 3)), rtol=0.05)


def test_a_scaling_grows_or_shrinks_the_image_within_its_bound():
    x = torch.zeros(64, 1, 20, 20)
    x[:, :, 6:14, 6:14] = 1.0                         # a centred 8x8 square: area 64
    out = random_affine(x, 0.0, 0.25, torch.Generator().manual_seed(2))
    areas = out.sum((1, 2, 3))
    assert (areas > 64 * 0.75 ** 2 - 4).all() and (areas < 64 * 1.25 ** 2 + 4).all()
    assert areas.min() < 60 and areas.max() > 68      # some shrink, some grow


def test_the_same_generator_gives_the_same_augmented_batch_in_the_input_shape():
    flat = torch.rand(6, 2 * 5 * 5)
    one = augment(flat, (2, 5, 5), 1, True, torch.Generator().manual_seed(3))
    two = augment(flat, (2, 5, 5), 1, True, torch.Generator().manual_seed(3))
    assert one.shape == flat.shape and torch.equal(one, two)
    assert augment(flat, (2, 5, 5), 0, False, torch.Generator()) is flat
    three = augment(flat, (2, 5, 5), 1, False, torch.Generator().manual_seed(3), 15.0, 0.1)
    four = augment(flat, (2, 5, 5), 1, False, torch.Generator().manual_seed(3), 15.0, 0.1)
    assert three.shape == flat.shape and torch.equal(three, four)


@pytest.mark.parametrize('key, value', [('augment_crop', -1), ('augment_flip', 'yes'),
                                        ('augment_rotate', -5), ('augment_rotate', 200),
                                        ('augment_rotate', 'ten'), ('augment_scale', 0.9),
                                        ('augment_scale', -0.1)])
def test_bad_augmentation_settings_are_refused_naming_the_key(key, value):
    with pytest.raises(ConfigError, match=f'training.{key}'):
        load_model_config({'name': 'aug', 'dataset': 'mnist', 'supervised': True,
                           'training': {key: value}, 'layers': [[-1, 'FFDense', [20]]]},
                          load_layer_config(REPO / 'params' / 'layers.yaml'))
