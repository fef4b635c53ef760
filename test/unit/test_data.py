"""Dataset loading: shapes, dtypes, label counts, limits, normalisation, missing-data errors."""
from pathlib import Path
import shutil

from dff_lifecycle.core.data import datasets as data
from dff_lifecycle.core.data.datasets import (DATA_ROOT_ENV, DataNotFoundError, load_dataset,
                                              resolve_data_root)
from dff_lifecycle.core.data.download import DownloadError
import pytest
import torch

# From the data README.
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
CIFAR_TRAIN_FIRST_LABELS = [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
CIFAR_TEST_FIRST_LABELS = [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]


@pytest.fixture(scope='module')
def mnist(data_root):
    return load_dataset('mnist', data_root)


def test_mnist_shapes_dtypes_and_label_counts(mnist):
    assert mnist.name == 'mnist' and mnist.num_classes == 10 and mnist.image_shape == (1, 28, 28)
    assert mnist.x_train.shape == (60000, 784) and mnist.x_test.shape == (10000, 784)
    assert mnist.x_train.dtype == mnist.x_test.dtype == torch.float32
    assert mnist.y_train.dtype == mnist.y_test.dtype == torch.int64
    assert torch.equal(torch.bincount(mnist.y_train), torch.tensor(MNIST_TRAIN_COUNTS))
    assert torch.equal(torch.bincount(mnist.y_test), torch.tensor(MNIST_TEST_COUNTS))


def test_mnist_is_normalised_with_the_usual_constants(mnist):
    # (x/255 - 0.1307) / 0.3081: background pixels map to one value, the training set to ~N(0, 1).
    background = (0.0 - 0.1307) / 0.3081
    assert float(mnist.x_train.min()) == pytest.approx(background, abs=1e-6)
    assert float(mnist.x_train.mean()) == pytest.approx(0.0, abs=0.01)
    assert float(mnist.x_train.std()) == pytest.approx(1.0, abs=0.01)


def test_limits_keep_the_first_samples(data_root, mnist):
    small = load_dataset('mnist', data_root, train_limit=100, test_limit=30)
    assert small.x_train.shape == (100, 784) and small.y_test.shape == (30,)
    assert torch.equal(small.x_train, mnist.x_train[:100])
    assert torch.equal(small.y_test, mnist.y_test[:30])


def test_cifar10_shapes_order_and_standardisation(data_root):
    # 10005 spans two of the 10k-image files, so the limit must cross a file boundary.
    cifar = load_dataset('cifar10', data_root, train_limit=10005, test_limit=10000)
    assert cifar.name == 'cifar10' and cifar.image_shape == (3, 32, 32) and cifar.num_classes == 10
    assert cifar.x_train.shape == (10005, 3, 32, 32) and cifar.x_test.shape == (10000, 3, 32, 32)
    assert cifar.x_train.dtype == torch.float32 and cifar.y_train.dtype == torch.int64
    assert torch.equal(cifar.y_train[:10], torch.tensor(CIFAR_TRAIN_FIRST_LABELS))
    assert torch.equal(cifar.y_test[:10], torch.tensor(CIFAR_TEST_FIRST_LABELS))
    assert torch.equal(torch.bincount(cifar.y_test), torch.full((10,), 1000))
    # Per-channel standardised with the statistics of the training images used.
    mean = cifar.x_train.mean(dim=(0, 2, 3))
    std = cifar.x_train.std(dim=(0, 2, 3))
    assert torch.allclose(mean, torch.zeros(3), atol=1e-4)
    assert torch.allclose(std, torch.ones(3), atol=1e-4)


def test_unknown_dataset_and_bad_limits(data_root):
    with pytest.raises(ValueError, match="unknown dataset 'svhn' \\(known: mnist, cifar10\\)"):
        load_dataset('svhn', data_root)
    with pytest.raises(ValueError, match='train_limit must be a positive number'):
        load_dataset('mnist', data_root, train_limit=0)


# ------------------------------------------------------------------------- data root resolution

def test_resolve_data_root_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_ROOT_ENV, str(tmp_path / 'env'))
    assert resolve_data_root(tmp_path / 'option') == tmp_path / 'option'
    assert resolve_data_root(None) == tmp_path / 'env'
    monkeypatch.delenv(DATA_ROOT_ENV)
    monkeypatch.chdir(tmp_path)
    assert resolve_data_root() == tmp_path / 'data'


@pytest.mark.parametrize('name, pattern', [
    ('mnist', 'MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz'),
    ('cifar10', 'cifar10/data_batch_{1..5}.npz, cifar10/test_batch.npz'),
])
def test_missing_root_names_path_source_and_expected_files(tmp_path, name, pattern):
    root = tmp_path / 'nowhere'
    with pytest.raises(DataNotFoundError) as caught:
        load_dataset(name, root)
    message = str(caught.value)
    assert isinstance(caught.value, FileNotFoundError)
    assert str(root) in message and 'given by option' in message
    assert f'it must contain {pattern}' in message
    assert '--data-root' in message and DATA_ROOT_ENV in message


def test_missing_message_says_when_the_root_came_from_env_or_default(tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_ROOT_ENV, str(tmp_path / 'from_env'))
    with pytest.raises(DataNotFoundError, match=f'from_env \\(from \\${DATA_ROOT_ENV}\\)'):
        load_dataset('mnist')
    monkeypatch.delenv(DATA_ROOT_ENV)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataNotFoundError, match='default ./data'):
        load_dataset('mnist')


def test_partial_data_lists_the_missing_files(tmp_path, data_root):
    raw = tmp_path / 'MNIST' / 'raw'
    raw.mkdir(parents=True)
    shutil.copy(data_root / 'MNIST' / 'raw' / 'train-labels-idx1-ubyte.gz', raw)
    with pytest.raises(DataNotFoundError) as caught:
        load_dataset('mnist', tmp_path)
    message = str(caught.value)
    assert 'missing 3 of 4' in message
    assert 't10k-images-idx3-ubyte.gz' in message
    assert 'MNIST/raw/train-labels-idx1-ubyte.gz' not in message.split('missing 3 of 4')[1]


def test_failed_download_is_reported_as_missing_data(tmp_path, monkeypatch):
    def offline(name, root, progress):
        raise DownloadError(f'{name} download into {root} failed: no network')

    # The real downloads (from a local mirror) are in test/integration/test_download.py.
    monkeypatch.setattr(data, 'download_dataset', offline)
    with pytest.raises(DataNotFoundError, match='mnist download into .* failed: no network'):
        load_dataset('mnist', tmp_path, download=True)


def test_download_is_skipped_when_files_exist(data_root, monkeypatch):
    monkeypatch.setattr(data, 'download_dataset',
                        lambda *args: pytest.fail('must not download'))
    small = load_dataset('mnist', Path(data_root), download=True, train_limit=5, test_limit=5)
    assert small.x_train.shape == (5, 784)
