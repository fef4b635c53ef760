"""Model-config overrides (`dotted.key:=value`) and the run's model: parsed, applied, checked."""
from pathlib import Path

from dff_lifecycle.common.overrides import apply_overrides, OverrideError, parse_override
from dff_lifecycle.core.config import ConfigError, load_layer_config, load_model_config
from dff_lifecycle.master.configs import load_run_model, RunRequest
import pytest

REPO = Path(__file__).resolve().parents[2]
TINY = str(REPO / 'test' / 'fixtures' / 'mnist_tiny.yaml')
LAYERS = str(REPO / 'params' / 'layers.yaml')


@pytest.mark.parametrize('text, keys, value', [
    ('training.batch_size:=500', ('training', 'batch_size'), 500),
    ('layer_defaults.lr:=0.01', ('layer_defaults', 'lr'), 0.01),
    ('head:=', ('head',), None),
    ('layers.0.2:=[128]', ('layers', '0', '2'), [128]),
    ('name:=a:=b', ('name',), 'a:=b'),            # only the first := separates
    (' training.negatives := hard', ('training', 'negatives'), 'hard'),
])
def test_parse_reads_dotted_keys_and_yaml_values(text, keys, value):
    parsed = parse_override(text)
    assert (parsed.keys, parsed.value) == (keys, value)


@pytest.mark.parametrize('text', ['training.epochs', 'training.epochs=3', ':=3', 'a..b:=1',
                                  'training.:=1', 'x:=[1', 'x:={a: 1'])
def test_parse_refuses_malformed_items_in_one_line(text):
    with pytest.raises(OverrideError) as err:
        parse_override(text)
    assert repr(text) in str(err.value) and '\n' not in str(err.value)


def test_apply_walks_mappings_and_lists_and_leaves_the_input_alone():
    data = {'training': {'epochs': 2}, 'layers': [[-1, 'FFDense', [256]]], 'head': None}
    out = apply_overrides(data, ['training.epochs:=3', 'layers.0.2.0:=128', 'head.hidden:=10',
                                 'training.epochs:=4'])
    assert out == {'training': {'epochs': 4}, 'layers': [[-1, 'FFDense', [128]]],
                   'head': {'hidden': 10}}
    assert data == {'training': {'epochs': 2}, 'layers': [[-1, 'FFDense', [256]]],
                    'head': None}


@pytest.mark.parametrize('text', ['training.epochs.x:=1', 'layers.1.0:=1', 'layers.x:=1',
                                  'layers.-1.0:=1'])
def test_apply_refuses_paths_that_do_not_exist(text):
    data = {'training': {'epochs': 2}, 'layers': [[-1, 'FFDense', [256]]]}
    with pytest.raises(OverrideError):
        apply_overrides(data, [text])


def test_no_changes_is_the_file_as_loaded():
    plain = load_model_config(TINY, load_layer_config(LAYERS))
    assert load_run_model(RunRequest(TINY, LAYERS)) == plain


def test_overrides_seed_and_epochs_change_the_model():
    model = load_run_model(RunRequest(TINY, LAYERS, epochs=3, seed=4, overrides=(
        'training.batch_size:=100', 'layer_defaults.lr:=0.01', 'training.epochs:=7')))
    t = model.training
    assert (t.batch_size, t.epochs, t.seed) == (100, 3, 4)  # --epochs beats the override
    assert [layer.hparams.lr for layer in model.layers] == [0.01, 0.01]
    # Layer seeds derive from training.seed, as with dff_train --seed.
    plain = load_run_model(RunRequest(TINY, LAYERS))
    assert [layer.seed for layer in model.layers] != [layer.seed for layer in plain.layers]
    assert model.source == plain.source


@pytest.mark.parametrize('overrides, source, key', [
    (('training.batch_size:=0',), f'{TINY} with overrides', 'training.batch_size'),
    (('training.batchsize:=5',), f'{TINY} with overrides', 'training.batchsize'),
    (('layers.0.2.0:=-3',), f'{TINY} with overrides', None),
    (('training',), 'overrides', ''),
])
def test_bad_overrides_are_config_errors_naming_the_file_and_key(overrides, source, key):
    with pytest.raises(ConfigError) as err:
        load_run_model(RunRequest(TINY, LAYERS, overrides=overrides))
    assert err.value.source == source
    if key is not None:
        assert err.value.key == key


def test_a_missing_model_file_is_named():
    with pytest.raises(ConfigError) as err:
        load_run_model(RunRequest('no/such/model.yaml', LAYERS))
    assert err.value.source == 'no/such/model.yaml'
