"""
Fetch a missing dataset with torchvision, verify it and put it into the loaders' layout.

    MNIST     root/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz (the originals)
    CIFAR-10  root/cifar10/{data_batch_1..5,test_batch}.npz (x: HWC uint8, y: uint8), converted
              from torchvision's cifar-10-python.tar.gz

The URLs and md5 sums are torchvision's (`MNIST.mirrors` and `.resources`, `CIFAR10.url`,
`.tgz_md5`, `.train_list`, `.test_list`); `$DFF_DATA_MIRROR` replaces the mirrors with one base
URL that serves the same file names side by side (the four MNIST .gz files and/or
cifar-10-python.tar.gz). Everything is fetched and checked in a hidden staging folder inside the
root and only then moved into place, so a failed or interrupted download leaves nothing that a
later run would take for the dataset.
"""
from __future__ import annotations

from contextlib import contextmanager
import functools
import os
from pathlib import Path
import shutil
import socket
import sys
import tempfile
from typing import Iterator
from urllib.error import HTTPError, URLError

import numpy as np

MIRROR_ENV = 'DFF_DATA_MIRROR'
TIMEOUT_S = 60.0  # per connect / read: a dead link fails instead of hanging the run


class DownloadError(RuntimeError):
    """A dataset could not be fetched or verified; the message is one line naming the URL."""


def mirror_override() -> str | None:
    """Return the base URL from $DFF_DATA_MIRROR (with a trailing slash), or None."""
    base = os.environ.get(MIRROR_ENV, '').strip()
    if not base:
        return None
    return base if base.endswith('/') else base + '/'


def download_dataset(name: str, root: Path, progress: bool = True) -> None:
    """Fetch dataset `name` ('mnist' or 'cifar10') into `root`; raise DownloadError on failure."""
    fetch = {'mnist': _fetch_mnist, 'cifar10': _fetch_cifar10}[name]
    try:
        root.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f'.download-{name}-', dir=root))
    except OSError as err:
        raise DownloadError(f'cannot download {name} into {root}: {err}') from None
    try:
        fetch(root, stage, progress)
    except OSError as err:  # unpacking, converting, moving: a full disk, say
        raise DownloadError(f'{name} download into {root} failed: {err}') from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _fetch_mnist(root: Path, stage: Path, progress: bool) -> None:
    from torchvision.datasets import MNIST
    mirror = mirror_override()
    mirrors = [mirror] if mirror else list(MNIST.mirrors)
    print(f'downloading mnist from {" or ".join(mirrors)} into {root}', flush=True)
    for filename, md5 in MNIST.resources:
        _fetch_first('mnist', root, [m + filename for m in mirrors], stage / filename, md5,
                     progress)
    raw = root / 'MNIST' / 'raw'
    raw.mkdir(parents=True, exist_ok=True)
    for filename, _md5 in MNIST.resources:
        os.replace(stage / filename, raw / filename)
    print(f'mnist: {len(MNIST.resources)} files md5-verified -> {raw}', flush=True)


def _fetch_cifar10(root: Path, stage: Path, progress: bool) -> None:
    from torchvision.datasets import CIFAR10
    from torchvision.datasets.utils import extract_archive
    mirror = mirror_override()
    url = mirror + CIFAR10.filename if mirror else CIFAR10.url
    print(f'downloading cifar10 from {url} into {root}', flush=True)
    archive = stage / CIFAR10.filename
    _fetch_first('cifar10', root, [url], archive, CIFAR10.tgz_md5, progress)
    extract_archive(str(archive), str(stage))
    archive.unlink()  # 170 MB less on disk while the npz files are written
    try:
        # Checks the md5 of every batch pickle and of batches.meta.
        train, test = CIFAR10(str(stage), train=True), CIFAR10(str(stage), train=False)
    except RuntimeError as err:
        raise DownloadError(f'cifar10 from {url}: {err}') from None
    out = stage / 'cifar10'
    out.mkdir()
    names = np.asarray(train.classes)
    targets = np.asarray(train.targets, dtype=np.uint8)
    files = []
    size = len(train.data) // len(train.train_list)  # the original batches, in order
    for i in range(len(train.train_list)):
        part = slice(i * size, (i + 1) * size)
        files.append(f'data_batch_{i + 1}.npz')
        np.savez_compressed(out / files[-1], x=train.data[part], y=targets[part],
                            label_names=names)
    files.append('test_batch.npz')
    np.savez_compressed(out / files[-1], x=test.data,
                        y=np.asarray(test.targets, dtype=np.uint8), label_names=names)
    final = root / 'cifar10'
    final.mkdir(exist_ok=True)
    for filename in files:
        os.replace(out / filename, final / filename)
    print(f'cifar10: archive and {len(train.train_list) + len(train.test_list)} batches '
          f'md5-verified -> {final}', flush=True)


def _fetch_first(name: str, root: Path, urls: list[str], path: Path, md5: str,
                 progress: bool) -> None:
    """Download `path` from the first of `urls` whose file has torchvision's md5."""
    from torchvision.datasets.utils import calculate_md5, download_url
    failures = []
    for url in urls:
        try:
            with _torchvision_io(path.name, progress):
                download_url(url, str(path.parent), path.name)
        except Exception as err:  # noqa: BLE001 - any transfer failure is reported per URL
            failures.append(f'{url}: {_reason(err)}')
            path.unlink(missing_ok=True)
            continue
        got = calculate_md5(path)
        if got == md5:
            return
        failures.append(f"{url}: md5 {got} is not torchvision's {md5} (corrupted or not the "
                        'original file)')
        path.unlink()
    hint = '' if mirror_override() else f'; set ${MIRROR_ENV} to another mirror'
    raise DownloadError(f'{name} download into {root} failed: {"; ".join(failures)}{hint}')


def _reason(err: BaseException) -> str:
    if isinstance(err, HTTPError):
        return f'HTTP {err.code} {err.reason}'
    if isinstance(err, URLError):
        return str(err.reason)
    return str(err) or type(err).__name__


@contextmanager
def _torchvision_io(label: str, progress: bool) -> Iterator[None]:
    """Give torchvision's download a timeout and a progress bar that suits the terminal."""
    from torchvision.datasets import utils
    from tqdm import tqdm
    interactive = sys.stderr.isatty()
    # torchvision's bar redraws every 0.1 s. Through a pipe (dff_launch prefixes each line of
    # the master's output) that is a flood of lines: there, a line every 10 s, none for a
    # download that takes less.
    bar = functools.partial(tqdm, desc=label, disable=not progress,
                            mininterval=0.1 if interactive else 10.0,
                            delay=0.0 if interactive else 10.0)
    # urllib has no timeout of its own; torchvision's calls take the socket default.
    saved_bar, saved_timeout = getattr(utils, 'tqdm', None), socket.getdefaulttimeout()
    if saved_bar is not None:
        utils.tqdm = bar
    socket.setdefaulttimeout(TIMEOUT_S)
    try:
        yield
    finally:
        socket.setdefaulttimeout(saved_timeout)
        if saved_bar is not None:
            utils.tqdm = saved_bar
