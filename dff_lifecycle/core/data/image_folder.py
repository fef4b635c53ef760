"""
Your own images: a folder per class, as torchvision's ImageFolder lays them out.

    root/<class>/<image>                 a held-out fraction (test_split) is the test set
    root/train/<class>/..., root/test/<class>/...   or the test set is given

`scan_image_folder` reads the layout (classes, image count, the image size) without
decoding pixels, so the model config knows its input shape and class count when it is
loaded; `load_image_folder` decodes every image (resized to `size`, in `channels`),
and standardises each channel with the training set's mean and spread. Every problem is
an ImageFolderError with one line that names the folder or file.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import Tensor

IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.gif', '.ppm', '.pgm', '.tif', '.tiff',
                  '.webp')
SPLIT_SEED = 0  # the held-out split is the same on every machine and run


class ImageFolderError(ValueError):
    """An image folder that cannot be used; the message names the folder or file."""


@dataclass(frozen=True)
class ImageFolderSpec:
    """A scanned image folder: where, its classes and files, and the shape images take."""

    root: Path
    size: tuple[int, int]            # (H, W) every image is resized to
    channels: int                    # 1 (grey) or 3 (RGB)
    test_split: float                # held-out fraction when there is no test/ folder
    classes: tuple[str, ...]
    train_files: tuple[tuple[Path, int], ...]
    test_files: tuple[tuple[Path, int], ...]
    size_given: bool = True

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.channels, *self.size)

    def to_dict(self) -> dict:
        out = {'type': 'image_folder', 'root': str(self.root), 'channels': self.channels,
               'test_split': self.test_split}
        if self.size_given:
            out['size'] = list(self.size)
        return out


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob('*') if p.is_file()
                  and p.suffix.lower() in IMAGE_SUFFIXES)


def images_in(folder: Path) -> list[Path]:
    """Every image file under `folder`, in sorted order (class sub-folders included)."""
    return _images_in(folder)


def read_image(path: Path) -> Tensor:
    """One image file as (C, H, W) in [0, 1], at its own size: grey stays 1 channel."""
    with _open(path) as image:
        try:
            image = image.convert('L' if image.mode in ('L', 'I', 'I;16', 'F', '1') else 'RGB')
            pixels = np.asarray(image, dtype=np.float32) / 255.0
        except OSError as exc:
            raise ImageFolderError(f'cannot read image {path}: {exc}') from None
    return torch.from_numpy(pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1))


def _class_folders(folder: Path) -> dict[str, list[Path]]:
    return {d.name: _images_in(d) for d in sorted(folder.iterdir())
            if d.is_dir() and not d.name.startswith('.')}


def scan_image_folder(root: Path, size: Optional[tuple[int, int]], channels: int,
                      test_split: float) -> ImageFolderSpec:
    """Read the layout of `root` (no pixels); ImageFolderError for an unusable one."""
    if not root.is_dir():
        raise ImageFolderError(f'image folder {root} does not exist (or is not a folder)')
    split_given = (root / 'train').is_dir() and (root / 'test').is_dir()
    train = _class_folders(root / 'train' if split_given else root)
    if not train:
        raise ImageFolderError(f'image folder {root} has no class folders: put the images of '
                               'each class in a folder named after it (root/<class>/<image>)')
    empty = [name for name, files in train.items() if not files]
    if empty:
        raise ImageFolderError(f'class folder {empty[0]!r} in {root} holds no images '
                               f'({", ".join(IMAGE_SUFFIXES)})')
    if len(train) < 2:
        raise ImageFolderError(f'image folder {root} has a single class ({next(iter(train))}): '
                               'a classifier needs at least two')
    classes = tuple(train)
    index = {name: i for i, name in enumerate(classes)}
    if split_given:
        test = _class_folders(root / 'test')
        unknown = sorted(set(test) - set(classes))
        if unknown:
            raise ImageFolderError(f'{root / "test"} has class {unknown[0]!r}, which '
                                   f'{root / "train"} lacks')
        train_files = [(p, index[c]) for c, files in train.items() for p in files]
        test_files = [(p, index[c]) for c, files in test.items() for p in files]
        if not test_files:
            raise ImageFolderError(f'{root / "test"} holds no images')
    else:
        train_files, test_files = _held_out(train, index, test_split, root)
    size_given = size is not None
    if size is None:
        size = _size_of(train_files[0][0])
    return ImageFolderSpec(root, tuple(size), channels, test_split, classes,
                           tuple(train_files), tuple(test_files), size_given)


def _held_out(train: dict[str, list[Path]], index: dict[str, int], fraction: float,
              root: Path) -> tuple[list, list]:
    rng = np.random.default_rng(SPLIT_SEED)
    kept, held = [], []
    for name, files in train.items():  # per class, so every class is in both sets
        order = rng.permutation(len(files))
        n_test = int(round(fraction * len(files)))
        if n_test < 1 or n_test >= len(files):
            raise ImageFolderError(f'class {name!r} in {root} has {len(files)} image(s): too '
                                   f'few to hold out test_split {fraction} of them (add '
                                   'images, or give root/train and root/test folders)')
        held += [(files[i], index[name]) for i in order[:n_test]]
        kept += [(files[i], index[name]) for i in order[n_test:]]
    return kept, held


def _open(path: Path):
    from PIL import Image, UnidentifiedImageError
    try:
        return Image.open(path)
    except (OSError, UnidentifiedImageError) as exc:
        raise ImageFolderError(f'cannot read image {path}: {exc}') from None


def _size_of(path: Path) -> tuple[int, int]:
    with _open(path) as image:
        width, height = image.size
    return (height, width)


def _decode(path: Path, spec: ImageFolderSpec) -> np.ndarray:
    with _open(path) as image:
        try:
            image = image.convert('L' if spec.channels == 1 else 'RGB')
            if (image.size[1], image.size[0]) != spec.size:
                if not spec.size_given:
                    raise ImageFolderError(
                        f'{path} is {image.size[1]}x{image.size[0]}, but the first image is '
                        f'{spec.size[0]}x{spec.size[1]}: give dataset.size to resize them all')
                image = image.resize((spec.size[1], spec.size[0]))
            pixels = np.asarray(image, dtype=np.float32) / 255.0
        except OSError as exc:  # a truncated file fails when its pixels are read
            raise ImageFolderError(f'cannot read image {path}: {exc}') from None
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


def _stack(files, spec: ImageFolderSpec, limit: Optional[int]) -> tuple[Tensor, Tensor]:
    chosen = files[:limit]
    images = np.stack([_decode(path, spec) for path, _ in chosen])
    labels = torch.tensor([label for _, label in chosen], dtype=torch.int64)
    return torch.from_numpy(images), labels


def load_image_folder(spec: ImageFolderSpec, train_limit: Optional[int] = None,
                      test_limit: Optional[int] = None):
    """Decode the images into a Dataset, standardised with the training set's stats."""
    from dff_lifecycle.core.data.datasets import channel_values, Dataset
    # A fixed shuffle, so train_limit keeps a mix of classes instead of the first class.
    order = np.random.default_rng(SPLIT_SEED).permutation(len(spec.train_files))
    x_train, y_train = _stack([spec.train_files[i] for i in order], spec, train_limit)
    x_test, y_test = _stack(list(spec.test_files), spec, test_limit)
    mean = x_train.mean(dim=(0, 2, 3), keepdim=True)
    std = x_train.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    return Dataset('image_folder', (x_train - mean) / std, y_train, (x_test - mean) / std,
                   y_test, spec.image_shape, len(spec.classes), spec.classes,
                   mean=channel_values(mean), std=channel_values(std))
