"""
Fetching a missing dataset for real: torchvision downloads from a local HTTP mirror.

The mirror is an http.server on 127.0.0.1 serving the files of the shared data root, so no test
needs the internet. $DFF_DATA_MIRROR points the code (and child processes) at it.
"""
from __future__ import annotations

from contextlib import contextmanager
import functools
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
import json
from pathlib import Path
import pickle
import socket
import sys
import tarfile
import threading
from typing import Iterator

from dff_lifecycle.cli.train import main as train_main
from dff_lifecycle.core.data.datasets import DataNotFoundError, load_dataset
from dff_lifecycle.core.data.download import MIRROR_ENV
from dff_processes import REPO, start_master
import numpy as np
import pytest
from ros_env import isolated_ros_env
import torch

pytestmark = pytest.mark.integration

TINY_MODEL = REPO / 'test' / 'fixtures' / 'mnist_tiny.yaml'   # 2000 train / 500 test samples
LAYERS = REPO / 'params' / 'layers.yaml'
MNIST_FILES = ('train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz',
               't10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz')


class QuietHandler(SimpleHTTPRequestHandler):

    def log_message(self, *args) -> None:
        pass


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        # torchvision opens each URL once to follow redirects and closes it unread.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@contextmanager
def serving(folder: Path) -> Iterator[str]:
    """Serve `folder` on 127.0.0.1 (a free port) while inside; yield the base URL."""
    server = QuietServer(('127.0.0.1', 0), functools.partial(QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f'http://127.0.0.1:{server.server_port}/'
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def mirror(data_root, monkeypatch) -> Iterator[str]:
    """Serve MNIST locally; its URL is in $DFF_DATA_MIRROR for this process and children."""
    with serving(data_root / 'MNIST' / 'raw') as url:
        monkeypatch.setenv(MIRROR_ENV, url)
        yield url


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return f'http://127.0.0.1:{sock.getsockname()[1]}/'


def all_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob('*') if p.is_file())


def test_mnist_is_fetched_verified_and_loads(mirror, data_root, tmp_path):
    root = tmp_path / 'fresh'
    mnist = load_dataset('mnist', root, download=True, progress=False)
    assert mnist.x_train.shape == (60000, 784) and mnist.x_test.shape == (10000, 784)
    reference = load_dataset('mnist', data_root, train_limit=100, test_limit=100)
    assert torch.equal(mnist.x_train[:100], reference.x_train)
    assert torch.equal(mnist.y_test[:100], reference.y_test)
    # The originals, byte for byte, and nothing else (no staging folder, no extracted copies).
    assert all_files(root) == sorted(f'MNIST/raw/{f}' for f in MNIST_FILES)
    assert [p.name for p in root.iterdir()] == ['MNIST']
    for name in MNIST_FILES:
        assert (root / 'MNIST' / 'raw' / name).read_bytes() == \
            (data_root / 'MNIST' / 'raw' / name).read_bytes()


def test_corrupted_file_is_refused_and_leaves_nothing_behind(data_root, tmp_path, monkeypatch):
    served = tmp_path / 'mirror'
    served.mkdir()
    for name in MNIST_FILES:
        (served / name).symlink_to(data_root / 'MNIST' / 'raw' / name)
    bad = served / 't10k-labels-idx1-ubyte.gz'
    content = bytearray(bad.read_bytes())
    content[100] ^= 0xFF
    bad.unlink()
    bad.write_bytes(bytes(content))
    root = tmp_path / 'data'
    with serving(served) as url:
        monkeypatch.setenv(MIRROR_ENV, url)
        with pytest.raises(DataNotFoundError) as caught:
            load_dataset('mnist', root, download=True, progress=False)
        message = str(caught.value)
        assert len(message.splitlines()) == 1
        assert f'{url}t10k-labels-idx1-ubyte.gz' in message and 'md5' in message
        # The three good files were not moved in either: no half dataset, no staging folder.
        assert list(root.iterdir()) == []

        bad.unlink()
        bad.symlink_to(data_root / 'MNIST' / 'raw' / bad.name)
        retried = load_dataset('mnist', root, download=True, progress=False, test_limit=10)
    assert retried.y_test.shape == (10,)


def test_downloads_off_name_the_root_the_dataset_and_the_switch(tmp_path):
    root = tmp_path / 'empty'
    with pytest.raises(DataNotFoundError) as caught:
        load_dataset('mnist', root)
    message = str(caught.value)
    assert len(message.splitlines()) == 1
    assert message.startswith(f'mnist data not found in {root} ')
    assert '--download' in message and 'download:=true' in message
    assert not root.exists()


def test_unreachable_mirror_is_named_in_one_line(tmp_path, monkeypatch):
    url = closed_port_url()
    monkeypatch.setenv(MIRROR_ENV, url)
    with pytest.raises(DataNotFoundError) as caught:
        load_dataset('mnist', tmp_path / 'data', download=True, progress=False)
    message = str(caught.value)
    assert len(message.splitlines()) == 1
    assert f'{url}train-images-idx3-ubyte.gz' in message
    assert list((tmp_path / 'data').iterdir()) == []


def test_without_the_override_the_mirrors_are_torchvisions(tmp_path, monkeypatch):
    from torchvision.datasets import MNIST
    monkeypatch.delenv(MIRROR_ENV, raising=False)
    first, second = closed_port_url(), closed_port_url() + 'mnist/'
    monkeypatch.setattr(MNIST, 'mirrors', [first, second])
    with pytest.raises(DataNotFoundError) as caught:
        load_dataset('mnist', tmp_path / 'data', download=True, progress=False)
    message = str(caught.value)
    assert f'{first}train-images-idx3-ubyte.gz' in message
    assert f'{second}train-images-idx3-ubyte.gz' in message
    assert MIRROR_ENV in message  # how to choose another one


def test_dff_train_downloads_into_a_fresh_root(mirror, tmp_path):
    root, out = tmp_path / 'data', tmp_path / 'run'
    code = train_main(['--config', str(TINY_MODEL), '--layers', str(LAYERS), '--data-root',
                       str(root), '--download', '--out', str(out), '--device', 'cpu',
                       '--no-progress'])
    assert code == 0
    metrics = json.loads((out / 'metrics.json').read_text())
    assert metrics['train_samples'] == 2000 and metrics['test_samples'] == 500
    assert all_files(root) == sorted(f'MNIST/raw/{f}' for f in MNIST_FILES)


def test_master_downloads_when_its_parameter_allows(mirror, ros_domain, tmp_path):
    # The real entry point, in a child process that finds the mirror in its environment.
    root = tmp_path / 'data'
    env = isolated_ros_env(ros_domain)
    # No server will come: the master loads (downloads) the data first, then gives up waiting.
    master = start_master(env, TINY_MODEL, data_root=str(root), download=True,
                          discovery_timeout_s=0.5)
    assert master.wait(90) == 2, master.output
    assert all_files(root) == sorted(f'MNIST/raw/{f}' for f in MNIST_FILES)


# --------------------------------------------------------------------------------- CIFAR-10

def build_cifar10_archive(data_root: Path, folder: Path) -> dict[str, str]:
    """
    Write cifar-10-python.tar.gz (torchvision's layout) from the shared npz batches.

    The shared copy is lossless but not byte-identical to the original pickles (their file
    names are lost), so the md5 sums are this archive's: the test gives them to torchvision.
    """
    from torchvision.datasets.utils import calculate_md5
    batches = folder / 'cifar-10-batches-py'
    batches.mkdir(parents=True)
    sums = {}
    for name in [f'data_batch_{i}' for i in range(1, 6)] + ['test_batch']:
        with np.load(data_root / 'cifar10' / f'{name}.npz') as npz:
            x, y, label_names = npz['x'], npz['y'], [str(n) for n in npz['label_names']]
        entry = {'batch_label': name, 'labels': y.tolist(),
                 'data': x.transpose(0, 3, 1, 2).reshape(len(x), -1),
                 'filenames': [f'{i}.png' for i in range(len(x))]}
        (batches / name).write_bytes(pickle.dumps(entry, protocol=2))
        sums[name] = calculate_md5(batches / name)
    meta = {'label_names': label_names, 'num_cases_per_batch': 10000, 'num_vis': 3072}
    (batches / 'batches.meta').write_bytes(pickle.dumps(meta, protocol=2))
    sums['batches.meta'] = calculate_md5(batches / 'batches.meta')
    archive = folder / 'cifar-10-python.tar.gz'
    with tarfile.open(archive, 'w:gz', compresslevel=1) as tar:
        tar.add(batches, arcname=batches.name)
    sums['archive'] = calculate_md5(archive)
    return sums


@pytest.mark.slow
def test_cifar10_is_fetched_verified_converted_and_loads(data_root, tmp_path, monkeypatch):
    from torchvision.datasets import CIFAR10
    served = tmp_path / 'mirror'
    sums = build_cifar10_archive(data_root, served)
    monkeypatch.setattr(CIFAR10, 'tgz_md5', sums['archive'])
    monkeypatch.setattr(CIFAR10, 'train_list',
                        [[f'data_batch_{i}', sums[f'data_batch_{i}']] for i in range(1, 6)])
    monkeypatch.setattr(CIFAR10, 'test_list', [['test_batch', sums['test_batch']]])
    monkeypatch.setattr(CIFAR10, 'meta', {**CIFAR10.meta, 'md5': sums['batches.meta']})
    root = tmp_path / 'data'
    with serving(served) as url:
        monkeypatch.setenv(MIRROR_ENV, url)
        cifar = load_dataset('cifar10', root, download=True, progress=False)
    reference = load_dataset('cifar10', data_root)
    assert cifar.x_train.shape == (50000, 3, 32, 32) and cifar.x_test.shape == (10000, 3, 32, 32)
    assert torch.equal(cifar.x_train, reference.x_train)
    assert torch.equal(cifar.y_train, reference.y_train)
    assert torch.equal(cifar.x_test, reference.x_test)
    # Only the loader's npz files are kept (no archive, no pickles, no staging folder).
    assert all_files(root) == sorted(f'cifar10/{p.name}' for p in
                                     (data_root / 'cifar10').glob('*.npz'))
