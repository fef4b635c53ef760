"""dff_train's command-line overrides of the model config."""
from pathlib import Path

from dff_lifecycle.cli.train import build_parser, load_config
import pytest

MODEL = Path(__file__).resolve().parents[2] / 'params' / 'models' / 'mnist_paper.yaml'


def config_for(*extra: str):
    return load_config(build_parser().parse_args(['--config', str(MODEL), *extra]))


def test_seed_override_reseeds_data_and_every_layer():
    base, reseeded = config_for(), config_for('--seed', '3')
    assert reseeded.training.seed == 3
    assert [spec.seed for spec in reseeded.layers] == [3000, 3001]
    assert [spec.seed for spec in base.layers] == [0, 1]
    assert reseeded.source == base.source  # messages still name the file


def test_step_and_epoch_overrides():
    cfg = config_for('--steps', '7', '--epochs', '2')
    assert (cfg.training.steps_per_layer, cfg.training.epochs) == (7, 2)


@pytest.mark.parametrize('flag, value', [('--seed', '-1'), ('--steps', '0')])
def test_bad_overrides_are_refused(flag, value, capsys):
    with pytest.raises(SystemExit):
        config_for(flag, value)
    assert 'must be >=' in capsys.readouterr().err
