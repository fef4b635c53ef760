"""Weight files: path rule, atomic save, safe load and clear errors."""
from dff_lifecycle.core.ff.layers import build_layer
from dff_lifecycle.core.ff.local_trainer import LocalTrainer
from dff_lifecycle.core.hyperparams import FFHyperParams
from dff_lifecycle.core.run import weights
from dff_lifecycle.core.run.weights import (layer_weight_path, load_state, save_state_atomic,
                                            WeightFileError)
import pytest
import torch


class NotAWeight:
    """A custom class: a weights_only load must refuse to unpickle it."""


def _trained_state() -> dict:
    layer, _ = build_layer('FFDense', 6, [4], seed=0)
    trainer = LocalTrainer(layer, FFHyperParams(), device='cpu')
    gen = torch.Generator().manual_seed(0)
    trainer.step(torch.rand(5, 6, generator=gen), torch.rand(5, 6, generator=gen))
    return trainer.state_dict()


def test_layer_weight_path(tmp_path):
    assert layer_weight_path(tmp_path, 'mnist_ff', 1) == tmp_path / 'mnist_ff' / 'layer_1.pt'
    for bad_model in ('', '..', 'a/b'):
        with pytest.raises(ValueError, match='model name'):
            layer_weight_path(tmp_path, bad_model, 0)
    with pytest.raises(ValueError, match='layer_index'):
        layer_weight_path(tmp_path, 'm', -1)


def test_save_load_round_trip_leaves_no_temporary_file(tmp_path):
    path = layer_weight_path(tmp_path, 'model', 0)
    state = _trained_state()
    save_state_atomic(path, state)
    save_state_atomic(path, state)  # overwriting an existing file works too
    loaded = load_state(path)
    assert sorted(p.name for p in path.parent.iterdir()) == ['layer_0.pt']
    assert loaded.keys() == state.keys()
    for name, tensor in state['layer'].items():
        assert torch.equal(loaded['layer'][name], tensor)
    assert loaded['optimizer']['state'][0]['step'] == state['optimizer']['state'][0]['step']
    assert loaded['batches_seen'] == 1


def test_failed_save_keeps_old_file_and_removes_temporary(tmp_path, monkeypatch):
    path = tmp_path / 'layer_0.pt'
    save_state_atomic(path, {'value': torch.ones(2)})

    def failing_save(*_args, **_kwargs):
        raise OSError('disk full')

    monkeypatch.setattr(weights.torch, 'save', failing_save)
    with pytest.raises(OSError, match='disk full'):
        save_state_atomic(path, {'value': torch.zeros(2)})
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ['layer_0.pt']
    assert torch.equal(load_state(path)['value'], torch.ones(2))


def test_corrupt_file_raises_weight_file_error_naming_it(tmp_path):
    path = tmp_path / 'layer_3.pt'
    path.write_bytes(b'this is not a torch file')
    with pytest.raises(WeightFileError, match='layer_3.pt') as caught:
        load_state(path)
    assert isinstance(caught.value, ValueError)


def test_missing_file_raises_weight_file_error(tmp_path):
    with pytest.raises(WeightFileError, match='missing.pt'):
        load_state(tmp_path / 'missing.pt')


def test_load_is_weights_only(tmp_path):
    path = tmp_path / 'layer_0.pt'
    torch.save({'payload': NotAWeight()}, path)
    with pytest.raises(WeightFileError, match='layer_0.pt'):
        load_state(path)


def test_non_dict_file_is_rejected(tmp_path):
    path = tmp_path / 'layer_0.pt'
    torch.save(torch.ones(3), path)
    with pytest.raises(WeightFileError, match='not a dict'):
        load_state(path)
