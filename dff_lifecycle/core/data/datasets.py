"""MNIST / CIFAR-10 loading into float32 tensors (file reading; fetching is data/download.py)."""
from __future__ import annotations

from dataclasses import dataclass
import gzip
import os
from pathlib import Path
import zipfile
import zlib

from dff_lifecycle.core.data.download import download_dataset, DownloadError, MIRROR_ENV
from dff_lifecycle.core.data.image_folder import load_image_folder
import numpy as np
import torch
from torch import Tensor

DATA_ROOT_ENV = 'DFF_DATA_ROOT'
DEFAULT_DATA_ROOT = Path('data')

MNIST_FILES = tuple(f'MNIST/raw/{split}-{kind}-ubyte.gz'
                    for split in ('train', 't10k') for kind in ('images-idx3', 'labels-idx1'))
CIFAR10_FILES = tuple([f'cifar10/data_batch_{i}.npz' for i in range(1, 6)]
                      + ['cifar10/test_batch.npz'])
EXPECTED_FILES = {
    'mnist': ('MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz', MNIST_FILES),
    'cifar10': ('cifar10/data_batch_{1..5}.npz, cifar10/test_batch.npz', CIFAR10_FILES),
}
DATASET_NAMES = tuple(EXPECTED_FILES)

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
CIFAR10_CLASSES = ('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse',
                   'ship', 'truck')
CIFAR10_BATCH_SIZE = 10_000  # images per npz file


class DataNotFoundError(FileNotFoundError):
    """The data root lacks a dataset's files; the message says where it looked and why there."""


@dataclass(frozen=True)
class Dataset:
    """A whole dataset in memory: x float32 (MNIST (N, 784), CIFAR-10 (N, 3, 32, 32)), y int64."""

    name: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    image_shape: tuple[int, ...]
    num_classes: int
    class_names: tuple[str, ...] = ()   # an image folder's class folders, in label order
    # Per channel, of pixels in [0, 1]: how the images were standardised (x - mean) / std.
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()


def _choose_data_root(explicit: str | Path | None) -> tuple[Path, str]:
    """Return the data root and how it was chosen, for error messages."""
    if explicit is not None:
        return Path(explicit).expanduser().resolve(), 'given by option'
    from_env = os.environ.get(DATA_ROOT_ENV)
    if from_env:
        return Path(from_env).expanduser().resolve(), f'from ${DATA_ROOT_ENV}'
    return (DEFAULT_DATA_ROOT.resolve(),
            f'default ./{DEFAULT_DATA_ROOT} (no option, ${DATA_ROOT_ENV} unset)')


def resolve_data_root(explicit: str | Path | None = None) -> Path:
    """Return the data root: the explicit path, else $DFF_DATA_ROOT, else ./data."""
    return _choose_data_root(explicit)[0]


def missing_files(name: str, root: Path) -> list[str]:
    """Relative paths of the files of dataset `name` that are absent under `root`."""
    _check_name(name)
    return [rel for rel in EXPECTED_FILES[name][1] if not (root / rel).is_file()]


def load_dataset(name: str, root: str | Path | None = None, download: bool = False,
                 train_limit: int | None = None, test_limit: int | None = None,
                 progress: bool = True) -> Dataset:
    """
    Load 'mnist' or 'cifar10' from `root` (see resolve_data_root).

    `download`: fetch a missing dataset first (core/data/download.py; `progress`: its bars).
    `train_limit` / `test_limit` keep only the first N samples (quick tests).
    """
    _check_name(name)
    for label, limit in (('train_limit', train_limit), ('test_limit', test_limit)):
        if limit is not None and limit < 1:
            raise ValueError(f'{label} must be a positive number of samples or None, got {limit}')
    path, how = _choose_data_root(root)
    missing = missing_files(name, path)
    if missing and download:
        try:
            download_dataset(name, path, progress)
        except DownloadError as err:
            raise DataNotFoundError(str(err)) from None
        missing = missing_files(name, path)
    if missing:
        raise DataNotFoundError(_not_found_message(name, path, how, missing, download))
    loader = _load_mnist if name == 'mnist' else _load_cifar10
    return loader(path, train_limit, test_limit)


def load_model_data(model_cfg, root: str | Path | None = None, download: bool = False,
                    progress: bool = True) -> Dataset:
    """
    Load what a model config trains on: its image folder, or MNIST / CIFAR-10 from `root`.

    The config's training.train_limit and test_limit apply.
    """
    training = model_cfg.training
    folder = getattr(model_cfg, 'image_folder', None)
    if folder is not None:
        return load_image_folder(folder, training.train_limit, training.test_limit)
    return load_dataset(model_cfg.dataset, root, download=download,
                        train_limit=training.train_limit, test_limit=training.test_limit,
                        progress=progress)


def dataset_class_names(name: str, num_classes: int) -> tuple[str, ...]:
    """Class names of a built-in dataset in label order (digits for MNIST; else the labels)."""
    if name == 'cifar10' and num_classes == len(CIFAR10_CLASSES):
        return CIFAR10_CLASSES
    return tuple(str(label) for label in range(num_classes))


def _check_name(name: str) -> None:
    if name not in EXPECTED_FILES:
        raise ValueError(f"unknown dataset '{name}' (known: {', '.join(DATASET_NAMES)})")


def _not_found_message(name: str, root: Path, how: str, missing: list[str],
                       download: bool) -> str:
    pattern = EXPECTED_FILES[name][0]
    # After a download that succeeded, files can only be missing if the layouts disagree.
    remedy = ('' if download else
              ', or allow downloads (dff_train --download, master -p download:=true; from '
              f'${MIRROR_ENV} if set)')
    return (f'{name} data not found in {root} ({how}): it must contain {pattern}; '
            f'missing {len(missing)} of {len(EXPECTED_FILES[name][1])}: {", ".join(missing)}. '
            f'Pass --data-root DIR (master: data_root), set ${DATA_ROOT_ENV}{remedy}.')


def _unreadable(path: Path, exc: BaseException) -> DataNotFoundError:
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return DataNotFoundError(f'{path}: unreadable, truncated or corrupt ({reason}); delete it '
                             'and fetch it again (dff_train --download, master: download)')


def _read_idx(path: Path) -> np.ndarray:
    """Decode one gzipped idx file (magic: 0, 0, dtype, ndim; then big-endian uint32 dims)."""
    try:
        with gzip.open(path, 'rb') as f:
            raw = f.read()
        if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
            raise ValueError('not an idx file')
        ndim = raw[3]
        dims = np.frombuffer(raw, '>u4', count=ndim, offset=4).astype(np.int64)
        return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)
    except (EOFError, OSError, ValueError, zlib.error) as exc:
        raise _unreadable(path, exc) from None


def _load_mnist(root: Path, train_limit: int | None, test_limit: int | None) -> Dataset:
    raw = root / 'MNIST' / 'raw'

    def split(prefix: str, limit: int | None) -> tuple[Tensor, Tensor]:
        images = _read_idx(raw / f'{prefix}-images-idx3-ubyte.gz')[:limit]
        labels = _read_idx(raw / f'{prefix}-labels-idx1-ubyte.gz')[:limit]
        x = torch.from_numpy(images.reshape(len(images), -1).astype(np.float32))
        x = (x / 255.0 - MNIST_MEAN) / MNIST_STD
        return x, torch.from_numpy(labels.astype(np.int64))

    x_train, y_train = split('train', train_limit)
    x_test, y_test = split('t10k', test_limit)
    return Dataset('mnist', x_train, y_train, x_test, y_test, image_shape=(1, 28, 28),
                   num_classes=10, mean=(MNIST_MEAN,), std=(MNIST_STD,))


def _read_cifar10_files(files: list[Path], limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    # Each file holds 10k images, so a limit only needs the first few files (much faster in tests).
    needed = len(files) if limit is None else min(len(files), -(-limit // CIFAR10_BATCH_SIZE))
    xs, ys = [], []
    for path in files[:needed]:
        try:
            with np.load(path) as batch:
                xs.append(batch['x'])
                ys.append(batch['y'])
        except (EOFError, OSError, ValueError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
            raise _unreadable(path, exc) from None
    return np.concatenate(xs)[:limit], np.concatenate(ys)[:limit]


def _to_chw_unit(images_hwc: np.ndarray) -> Tensor:
    return torch.from_numpy(images_hwc).permute(0, 3, 1, 2).float().div_(255.0).contiguous()


def _load_cifar10(root: Path, train_limit: int | None, test_limit: int | None) -> Dataset:
    folder = root / 'cifar10'
    train_files = [folder / f'data_batch_{i}.npz' for i in range(1, 6)]
    x_train_u8, y_train = _read_cifar10_files(train_files, train_limit)
    x_test_u8, y_test = _read_cifar10_files([folder / 'test_batch.npz'], test_limit)
    x_train, x_test = _to_chw_unit(x_train_u8), _to_chw_unit(x_test_u8)
    # Statistics of the training images actually used, so test data never leaks into them.
    mean = x_train.mean(dim=(0, 2, 3), keepdim=True)
    std = x_train.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    return Dataset('cifar10', (x_train - mean) / std, torch.from_numpy(y_train.astype(np.int64)),
                   (x_test - mean) / std, torch.from_numpy(y_test.astype(np.int64)),
                   image_shape=(3, 32, 32), num_classes=10, mean=channel_values(mean),
                   std=channel_values(std))


def channel_values(per_channel: Tensor) -> tuple[float, ...]:
    """(1, C, 1, 1) statistics as C plain floats."""
    return tuple(float(v) for v in per_channel.flatten())
