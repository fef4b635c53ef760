"""Your own images: an image folder as a model's dataset, its layout, and its errors."""
from __future__ import annotations

from pathlib import Path

from dff_lifecycle.core.config import ConfigError, load_layer_config, load_model_config
from dff_lifecycle.core.data.datasets import load_model_data
from dff_lifecycle.core.data.image_folder import ImageFolderError
from dff_lifecycle.core.run.experiment import run_single_process
import numpy as np
from PIL import Image
import pytest

REPO = Path(__file__).resolve().parents[2]
LAYERS = load_layer_config(REPO / 'params' / 'layers.yaml')
CLASSES = ('circle', 'cross', 'square')


def write_images(folder: Path, per_class: int = 10, size=(12, 12), classes=CLASSES,
                 seed: int = 0) -> Path:
    """Class k is a bright band in third k of the image, over noise."""
    rng = np.random.default_rng(seed)
    for k, name in enumerate(classes):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 60, (*size, 3), dtype=np.uint8)
            band = slice(k * size[0] // 3, (k + 1) * size[0] // 3)
            pixels[band] = 230
            Image.fromarray(pixels).save(folder / name / f'{i:03d}.png')
    return folder


def model(root, supervised=True, **dataset):
    data = {'name': 'own_images', 'dataset': {'type': 'image_folder', 'root': str(root),
                                              **dataset},
            'supervised': supervised,
            'training': {'batch_size': 6, 'epochs': 3, 'eval_batch_size': 50,
                         'train_eval_limit': 0},
            'layer_defaults': {'lr': 0.01},
            'layers': [[-1, 'FFConv2d', [6, 3, 1, 1]], [-1, 'MaxPool2d', [2]],
                       [-1, 'FFDense', [30]]]}
    return load_model_config(data, LAYERS)


def test_a_folder_per_class_is_a_dataset_with_a_held_out_split(tmp_path):
    cfg = model(write_images(tmp_path / 'shapes'), channels=3, size=[12, 12])
    assert cfg.dataset == 'image_folder' and cfg.num_classes == 3
    assert cfg.input_shape == (3, 12, 12) and cfg.objective == 'class_groups'
    data = load_model_data(cfg)
    assert data.class_names == CLASSES
    assert len(data.x_train) == 24 and len(data.x_test) == 6  # 20 % of each class held out
    assert sorted(data.y_test.tolist()) == [0, 0, 1, 1, 2, 2]
    assert abs(float(data.x_train.mean())) < 1e-4  # standardised on the training set
    metrics = run_single_process(cfg, data, 'cpu', progress=False, log=lambda _t: None)
    assert metrics['test_accuracy'] >= 0.8
    again = load_model_config(cfg.to_dict(), LAYERS)  # the config written to metrics.json
    assert again.image_folder.root == cfg.image_folder.root


def test_train_and_test_folders_and_resizing_and_grey(tmp_path):
    root = tmp_path / 'split'
    write_images(root / 'train', per_class=4, size=(20, 16))
    write_images(root / 'test', per_class=2, size=(20, 16), seed=1)
    cfg = model(root, channels=1, size=[8, 8])
    data = load_model_data(cfg)
    assert data.x_train.shape == (12, 1, 8, 8) and data.x_test.shape == (6, 1, 8, 8)
    unsized = model(root, channels=3)
    assert unsized.input_shape == (3, 20, 16)  # the images' own size


@pytest.mark.parametrize('make, extra, message', [
    (lambda root: None, {}, 'does not exist'),
    (lambda root: root.mkdir(), {}, 'has no class folders'),
    (lambda root: (write_images(root), (root / 'empty').mkdir()), {}, "'empty' in"),
    (lambda root: write_images(root, classes=('only',)), {}, 'single class'),
    (lambda root: write_images(root, per_class=2), {'test_split': 0.1}, 'too few'),
    (lambda root: write_images(root), {'channels': 2}, 'dataset.channels'),
    (lambda root: write_images(root), {'size': [12]}, 'dataset.size'),
    (lambda root: write_images(root), {'colour': True}, 'colour'),
])
def test_unusable_folders_are_refused_in_one_line(tmp_path, make, extra, message):
    root = tmp_path / 'images'
    make(root)
    with pytest.raises(ConfigError) as caught:
        model(root, **extra)
    assert message in str(caught.value) and '\n' not in str(caught.value)


def test_an_unreadable_image_and_mixed_sizes_are_named_at_loading(tmp_path):
    root = write_images(tmp_path / 'bad')
    broken = root / 'cross' / '005.png'
    broken.write_bytes(broken.read_bytes()[:40])
    with pytest.raises(ImageFolderError, match='cannot read image .*005.png'):
        load_model_data(model(root, size=[12, 12]))
    mixed = write_images(tmp_path / 'mixed')
    Image.new('RGB', (30, 30)).save(mixed / 'square' / '999.png')
    with pytest.raises(ImageFolderError, match='give dataset.size'):
        load_model_data(model(mixed))
