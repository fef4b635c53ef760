"""Memory estimates before allocating, and reading a cgroup's room."""
from __future__ import annotations

from pathlib import Path

from dff_lifecycle.common.memory_limit import cgroup_room, machine_available
from dff_lifecycle.core.ff.memory import (check_fits, dense_layer_bytes, DoesNotFit,
                                          persistent_state_bytes, state_bytes)
import pytest


def test_state_counts_weights_gradients_and_optimizer():
    assert state_bytes(10, 10, 'sgd') == int(110 * 2.15 * 4)  # + the backward's workspace
    assert state_bytes(10, 10, 'adam') == 110 * 6 * 4  # moments + a step's 2 temporaries
    assert persistent_state_bytes(110, 'adam') == 110 * 4 * 4
    assert dense_layer_bytes(1000, 1000, 'adam') > state_bytes(1000, 1000, 'adam')


def test_a_model_that_does_not_fit_says_so_in_one_line():
    with pytest.raises(DoesNotFit) as err:
        check_fits(3 << 30, 'model x', available=1 << 30)
    text = str(err.value)
    assert '\n' not in text and 'model x' in text and '1,024 MiB' in text
    check_fits(1 << 20, 'small', available=1 << 30)


def test_cgroup_v1_and_v2_limits_are_read(tmp_path: Path):
    v1 = tmp_path / 'memory' / 'dff' / 'c' / 'd1'
    v1.mkdir(parents=True)
    (v1 / 'memory.limit_in_bytes').write_text(str(512 << 20))
    (v1 / 'memory.usage_in_bytes').write_text(str(100 << 20))
    assert cgroup_room(tmp_path, '4:memory:/dff/c/d1\n1:cpu:/x\n') == (512 << 20, 100 << 20)
    v2 = tmp_path / 'box'
    v2.mkdir()
    (v2 / 'memory.max').write_text('max\n')
    assert cgroup_room(tmp_path, '0::/box\n') is None          # unlimited
    (v2 / 'memory.max').write_text(str(1 << 30))
    (v2 / 'memory.current').write_text(str(1 << 20))
    assert cgroup_room(tmp_path, '0::/box\n') == (1 << 30, 1 << 20)
    unlimited = tmp_path / 'memory' / 'free'
    unlimited.mkdir()
    (unlimited / 'memory.limit_in_bytes').write_text(str(1 << 62))
    assert cgroup_room(tmp_path, '4:memory:/free\n') is None


def test_machine_available_reads_meminfo():
    assert machine_available('MemTotal: 10 kB\nMemAvailable:     2048 kB\n') == 2048 * 1024


def test_dff_train_refuses_a_model_that_cannot_fit_before_loading_anything(tmp_path, capsys):
    from dff_lifecycle.cli import train
    config = tmp_path / 'huge.yaml'
    config.write_text('name: huge\ndataset: mnist\nsupervised: true\ngoodness_layers: [0]\n'
                      'training: {mode: minibatch, batch_size: 100, epochs: 1}\n'
                      'layers:\n  - [-1, FFDense, [400000]]\n  - [-1, FFDense, [400000]]\n')
    layers = Path(__file__).resolve().parents[2] / 'params' / 'layers.yaml'
    code = train.main(['--config', str(config), '--layers', str(layers),
                       '--data-root', str(tmp_path / 'no_data_here'), '--out', str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith('dff_train: error:') and 'needs about' in err and '\n' not in err


# ------------------------------------------------------------------------ process budget
def test_co_hosted_layers_claim_their_whole_need_before_they_allocate_it():
    from dff_lifecycle.common.memory_limit import MemoryBudget
    free = {'now': 1000}
    budget = MemoryBudget(lambda: free['now'])
    refused = []

    def refuse(room):
        refused.append(room)
        raise MemoryError(room)
    budget.claim('/m/layer_0', 600, refuse)
    free['now'] = 950            # layer_0 allocated only its weights so far
    assert budget.room() == 400  # but 600 are promised to it
    with pytest.raises(MemoryError):
        budget.claim('/m/layer_1', 500, refuse)
    assert refused == [400]
    budget.claim('/m/layer_1', 400, refuse)
    assert budget.room() == 0
    budget.release('/m/layer_0')  # cleaned up: its claim is free again
    assert budget.room() == 600
    free['now'] = 100             # and what the machine has now still bounds it
    assert budget.room() == 100


def test_a_budget_without_any_known_limit_refuses_nothing():
    from dff_lifecycle.common.memory_limit import MemoryBudget
    budget = MemoryBudget(lambda: None)
    budget.claim('/m/layer_0', 1 << 40, lambda room: pytest.fail('refused'))
    assert budget.room() is None
