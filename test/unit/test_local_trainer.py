"""LocalTrainer: local optimisation, inference and resumable state."""
import io

from dff_lifecycle.core.ff.layers import build_layer
from dff_lifecycle.core.ff.local_trainer import LocalTrainer
from dff_lifecycle.core.hyperparams import FFHyperParams
import pytest
from synthetic import separable_batch
import torch


def _trainer(seed: int = 0, **hparams) -> LocalTrainer:
    layer, _ = build_layer('FFDense', 16, [8], seed=seed)
    return LocalTrainer(layer, FFHyperParams(**hparams), device='cpu')


def _batch(seed: int = 0, n: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    return separable_batch(n, 16, seed)


def test_steps_separate_positive_from_negative_goodness():
    trainer = _trainer(lr=0.05)
    x_pos, x_neg = _batch()
    first = trainer.step(x_pos, x_neg)
    last = trainer.step(x_pos, x_neg, steps=60)
    assert last.loss < first.loss
    assert last.goodness_pos > last.goodness_neg
    assert (trainer.batches_seen, trainer.steps_seen) == (2, 61)


def test_many_steps_on_one_batch_equal_single_steps():
    # step(..., steps=n) normalises the input once; it must not change the result.
    together, apart = _trainer(lr=0.05), _trainer(lr=0.05)
    x_pos, x_neg = _batch()
    last_together = together.step(x_pos, x_neg, steps=5)
    for _ in range(5):
        last_apart = apart.step(x_pos, x_neg)
    assert torch.allclose(together.layer.weight, apart.layer.weight, atol=1e-6)
    assert last_together.loss == pytest.approx(last_apart.loss, abs=1e-6)
    # Only the activities differ: many steps pass on the final weights' output.
    assert torch.allclose(last_together.h_pos, apart.infer(x_pos), atol=1e-6)


def test_one_step_returns_the_activities_of_its_own_forward():
    x_pos, x_neg = _batch()
    trainer = _trainer()
    before = trainer.infer(x_pos)
    one = trainer.step(x_pos, x_neg)
    # A pipelined step passes on what it computed before its update: one forward per batch.
    torch.testing.assert_close(one.h_pos, before)
    assert not one.h_pos.requires_grad and one.h_pos.shape == (32, 8)
    assert isinstance(one.loss, float) and isinstance(one.goodness_pos, float)


def test_many_steps_return_the_activities_of_the_final_weights():
    x_pos, x_neg = _batch()
    trainer = _trainer()
    three = trainer.step(x_pos, x_neg, steps=3)
    # Full batch: the next layer trains on what this layer will output at inference.
    torch.testing.assert_close(three.h_pos, trainer.infer(x_pos))
    torch.testing.assert_close(three.h_neg, trainer.infer(x_neg))
    assert not three.h_pos.requires_grad


def test_step_validates_arguments():
    x_pos, x_neg = _batch()
    with pytest.raises(ValueError, match='steps'):
        _trainer().step(x_pos, x_neg, steps=0)
    with pytest.raises(ValueError, match='shape'):
        _trainer().step(x_pos, x_neg[:, :4])


def test_infer_is_gradient_free_and_matches_layer():
    trainer = _trainer()
    x_pos, _ = _batch()
    h = trainer.infer(x_pos)
    assert not h.requires_grad
    torch.testing.assert_close(h, trainer.layer(x_pos).detach())


@pytest.mark.parametrize('name, optimizer_type', [('adam', torch.optim.Adam),
                                                  ('sgd', torch.optim.SGD)])
def test_optimizer_follows_hparams(name, optimizer_type):
    trainer = _trainer(optimizer=name, lr=0.2, weight_decay=1e-3)
    assert isinstance(trainer.optimizer, optimizer_type)
    assert trainer.optimizer.param_groups[0]['lr'] == 0.2
    assert trainer.device == torch.device('cpu')


def test_state_dict_round_trip_resumes_identically():
    x_pos, x_neg = _batch()
    original = _trainer(seed=0)
    original.step(x_pos, x_neg, steps=3)
    buffer = io.BytesIO()
    torch.save(original.state_dict(), buffer)
    buffer.seek(0)
    restored = _trainer(seed=99)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert (restored.batches_seen, restored.steps_seen) == (1, 3)
    # Identical next steps prove the Adam moments came back too, not just the weights.
    next_original = original.step(x_pos, x_neg, steps=2)
    next_restored = restored.step(x_pos, x_neg, steps=2)
    assert next_restored.loss == next_original.loss
    for a, b in zip(original.layer.parameters(), restored.layer.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_loaded_state_keeps_configured_lr():
    source = _trainer(lr=0.03)
    source.step(*_batch())
    target = _trainer(lr=0.001)
    target.load_state_dict(source.state_dict())
    assert target.optimizer.param_groups[0]['lr'] == 0.001


def test_load_rejects_incompatible_state():
    state = _trainer(optimizer='adam').state_dict()
    with pytest.raises(ValueError, match="'adam'.*'sgd'"):
        _trainer(optimizer='sgd').load_state_dict(state)
    layer, _ = build_layer('FFDense', 16, [4], seed=0)
    with pytest.raises(ValueError, match='does not fit'):
        LocalTrainer(layer, FFHyperParams()).load_state_dict(state)
    del state['optimizer']
    with pytest.raises(ValueError, match='lacks optimizer'):
        _trainer().load_state_dict(state)


def test_invalid_hparams_are_rejected_at_construction():
    with pytest.raises(ValueError, match='lr'):
        _trainer(lr=0.0)
