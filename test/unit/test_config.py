"""Layer/model config parsing: shipped configs, every validation error, round trip, no eval."""
import ast
import copy
import inspect
from pathlib import Path

from dff_lifecycle.core import config as config_module
from dff_lifecycle.core.config import ConfigError, load_layer_config, load_model_config
from dff_lifecycle.core.ff.head import HeadConfig
from dff_lifecycle.core.hyperparams import FFHyperParams
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PARAMS = REPO / 'params'
MSG = 'dff_msgs/msg/TensorChunk'
STATUS = 'dff_msgs/msg/LayerStatus'
LAYER_TYPES = {'layer_types': {'FFDense': {'inputs': {'train': MSG, 'infer': MSG},
                                           'outputs': {'train': MSG, 'status': STATUS}}}}
MODEL = {
    'name': 'tiny_ff',
    'dataset': 'mnist',
    'supervised': True,
    'num_classes': 10,
    'input_shape': [784],
    'goodness_layers': [0, 1],
    'feature_layers': [0, 1],
    'head': None,
    'layer_defaults': {'threshold': 2.0, 'lr': 0.03},
    'training': {'mode': 'minibatch', 'batch_size': 100, 'epochs': 2, 'seed': 3},
    'layers': [[-1, 'FFDense', [500]], [-1, 'FFDense', [300, {'lr': 0.01}]]],
}
CIFAR_HEAD = {'hidden': 0, 'epochs': 2, 'lr': 0.001, 'batch_size': 64, 'weight_decay': 0.0}


@pytest.fixture(scope='module')
def layer_types():
    return load_layer_config(LAYER_TYPES)


DELETE = object()  # marks a key to remove in model(...)


def model(**changes):
    """MODEL with top-level keys replaced, merged (dicts) or removed (DELETE)."""
    data = copy.deepcopy(MODEL)
    for key, value in changes.items():
        if value is DELETE:
            del data[key]
        elif isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return data


# ----------------------------------------------------------------------------- valid configs

@pytest.mark.parametrize('name', sorted(p.stem for p in (PARAMS / 'models').glob('*.yaml')))
def test_shipped_model_configs_parse_and_round_trip(name):
    layer_types = load_layer_config(PARAMS / 'layers.yaml')
    cfg = load_model_config(PARAMS / 'models' / f'{name}.yaml', layer_types)
    assert cfg.name == name
    assert cfg.source.endswith(f'{name}.yaml')
    assert load_model_config(yaml.safe_load(yaml.safe_dump(cfg.to_dict())), layer_types) == cfg


def test_shipped_layer_config_lists_ffdense_ports():
    specs = load_layer_config(PARAMS / 'layers.yaml')
    assert set(specs['FFDense'].inputs) == {'train', 'infer'}
    assert specs['FFDense'].outputs['status'] == 'dff_msgs/msg/LayerStatus'


def test_paper_recipe_matches_the_paper():
    cfg = load_model_config(PARAMS / 'models' / 'mnist_paper.yaml',
                            load_layer_config(PARAMS / 'layers.yaml'))
    assert [(s.in_features, s.out_features) for s in cfg.layers] == [(784, 500), (500, 500)]
    assert cfg.training.mode == 'full_batch'
    assert cfg.training.train_limit == 50000 and cfg.training.steps_per_layer == 1000
    assert all(s.hparams == FFHyperParams(threshold=2.0, lr=0.03, optimizer='adam')
               for s in cfg.layers)
    assert cfg.goodness_layers == (0, 1) and cfg.supervised and cfg.head is None
    assert cfg.training.negatives == 'permuted'  # the reference shuffles the batch labels


def test_cifar_recipe_is_unsupervised_with_a_head():
    cfg = load_model_config(PARAMS / 'models' / 'cifar10_ff.yaml',
                            load_layer_config(PARAMS / 'layers.yaml'))
    assert not cfg.supervised and isinstance(cfg.head, HeadConfig)
    assert cfg.input_shape == (3, 32, 32) and cfg.layers[0].in_features == 3072


def test_layers_are_resolved(layer_types):
    cfg = load_model_config(MODEL, layer_types)
    first, second = cfg.layers

    def wiring(spec):
        return spec.index, spec.source_index, spec.in_features, spec.out_features

    assert wiring(first) == (0, -1, 784, 500)
    assert wiring(second) == (1, 0, 500, 300)
    # Per-layer overrides apply to that layer only; the rest comes from layer_defaults.
    assert first.hparams == FFHyperParams(threshold=2.0, lr=0.03)
    assert second.hparams == FFHyperParams(threshold=2.0, lr=0.01)
    assert (first.seed, second.seed) == (3000, 3001)  # training.seed * 1000 + index
    assert cfg.training.steps_per_layer == 1000 and cfg.training.train_limit is None  # defaults


def test_absolute_from_index_and_defaults(layer_types):
    data = model(layers=[[-1, 'FFDense', [50]], [-1, 'FFDense', [40]], [0, 'FFDense', [30]]])
    for key in ('num_classes', 'input_shape', 'goodness_layers', 'feature_layers', 'head',
                'layer_defaults', 'training'):
        del data[key]
    cfg = load_model_config(data, layer_types)
    assert cfg.layers[2].source_index == 0 and cfg.layers[2].in_features == 50
    assert cfg.goodness_layers == (0, 1, 2) and cfg.num_classes == 10 and cfg.input_shape == (784,)
    assert cfg.layer_defaults == FFHyperParams()
    assert load_model_config(cfg.to_dict(), layer_types) == cfg


def test_unsupervised_config_round_trips(layer_types):
    data = model(dataset='cifar10', supervised=False, input_shape=[3, 32, 32], head=CIFAR_HEAD)
    cfg = load_model_config(data, layer_types)
    assert cfg.head == HeadConfig(**CIFAR_HEAD)
    assert cfg.layers[0].in_features == 3072
    assert load_model_config(cfg.to_dict(), layer_types) == cfg


def test_model_config_is_frozen(layer_types):
    cfg = load_model_config(MODEL, layer_types)
    with pytest.raises(AttributeError):
        cfg.name = 'other'


# ----------------------------------------------------------------------------- model errors

BAD_MODELS = [
    (model(extra=1), 'extra', 'unknown key (known: name, dataset'),
    (model(name=DELETE), 'name', 'required key is missing'),
    (model(layers=DELETE), 'layers', 'required key is missing'),
    (model(name='Tiny-FF'), 'name', "lower_snake_case ([a-z][a-z0-9_]*), got 'Tiny-FF'"),
    (model(dataset='svhn'), 'dataset', "must be one of mnist, cifar10, got 'svhn'"),
    (model(supervised='yes'), 'supervised', "must be true or false, got str 'yes'"),
    (model(num_classes=5), 'num_classes', 'mnist has 10 classes, got 5'),
    (model(num_classes=1.5), 'num_classes', 'must be an integer, got float 1.5'),
    (model(input_shape=[28, 27]), 'input_shape', 'mnist inputs have shape [784] (784 values'),
    (model(goodness_layers=[0, 2]), 'goodness_layers[1]', 'must be <= 1, got 2'),
    (model(goodness_layers=[]), 'goodness_layers', 'must be a non-empty list'),
    (model(goodness_layers=[1, 1]), 'goodness_layers[1]', 'duplicate value 1'),
    (model(feature_layers=[-1]), 'feature_layers[0]', 'must be >= 0, got -1'),
    (model(head=CIFAR_HEAD), 'head', 'must be null for supervised models'),
    (model(supervised=False), 'head', 'unsupervised models need a head'),
    (model(supervised=False, head={**CIFAR_HEAD, 'depth': 2}), 'head.depth',
     'unknown key (known: hidden,'),
    (model(supervised=False, head={**CIFAR_HEAD, 'epochs': 0}), 'head.epochs',
     'must be >= 1, got 0'),
    (model(supervised=False, head={**CIFAR_HEAD, 'lr': 0}), 'head.lr', 'must be > 0.0, got 0'),
    (model(supervised=False, head={**CIFAR_HEAD, 'hidden': -1}), 'head.hidden',
     'must be >= 0, got -1'),
    (model(supervised=False, head={**CIFAR_HEAD, 'standardise': 'yes'}), 'head.standardise',
     ''),
    (model(layer_defaults={'momentum': 0.9}), 'layer_defaults.momentum',
     'unknown key (known: threshold, lr,'),
    (model(layer_defaults={'lr': -1.0}), 'layer_defaults.lr', 'lr must be > 0.0, got -1.0'),
    (model(layer_defaults={'lr': '1e-3 * 10'}), 'layer_defaults.lr', 'lr must be a finite number'),
    (model(layer_defaults={'goodness': 'max'}), 'layer_defaults.goodness',
     'goodness must be one of mean, sum'),
    (model(layer_defaults={'loss': 'hinge'}), 'layer_defaults.loss',
     'loss must be one of softplus, symba'),
    (model(layer_defaults={'optimizer': 'rmsprop'}), 'layer_defaults.optimizer',
     'optimizer must be one of adam'),
    (model(layer_defaults=[1]), 'layer_defaults', 'must be a mapping, got list'),
    (model(training={'mode': 'online'}), 'training.mode', 'must be one of minibatch, full_batch'),
    (model(training={'batch_size': 1}), 'training.batch_size', 'must be >= 2, got 1'),
    (model(training={'epochs': 0}), 'training.epochs', 'must be >= 1, got 0'),
    (model(training={'epochs': True}), 'training.epochs', 'must be an integer, got bool True'),
    (model(training={'steps_per_layer': 0}), 'training.steps_per_layer', 'must be >= 1, got 0'),
    (model(training={'train_limit': 1}), 'training.train_limit', 'must be >= 2, got 1'),
    (model(training={'test_limit': '10'}), 'training.test_limit',
     "must be an integer or null, got str '10'"),
    (model(training={'eval_batch_size': 0}), 'training.eval_batch_size', 'must be >= 1, got 0'),
    (model(training={'seed': -1}), 'training.seed', 'must be >= 0, got -1'),
    (model(training={'lr': 0.1}), 'training.lr', 'unknown key (known: mode, batch_size'),
    (model(training={'negatives': 'easy'}), 'training.negatives',
     'must be one of random, permuted, hard'),
    (model(training={'negatives': 'hard', 'mode': 'full_batch'}), 'training.negatives',
     'need a supervised model trained in minibatch mode'),
    (model(supervised=False, head=CIFAR_HEAD, training={'negatives': 'hard'}),
     'training.negatives', 'need a supervised model'),
    (model(supervised=False, head=CIFAR_HEAD, training={'negatives': 'permuted'}),
     'training.negatives', 'need a supervised model'),
    (model(training={'hard_negative_temperature': 0}), 'training.hard_negative_temperature',
     'must be > 0.0, got 0'),
    (model(training={'curve_every': -1}), 'training.curve_every', 'must be >= 0, got -1'),
    (model(training={'curve_samples': 0}), 'training.curve_samples', 'must be >= 1, got 0'),
    (model(training={'curve_every': 1, 'mode': 'full_batch'}), 'training.curve_every',
     'needs a supervised model trained in minibatch mode'),
    (model(supervised=False, head=CIFAR_HEAD, training={'curve_every': 2}),
     'training.curve_every', 'needs a supervised model'),
    (model(layers=[]), 'layers', 'must be a non-empty list of [from, module, args] rows'),
    (model(layers=[[-1, 'FFDense']]), 'layers[0]', 'must be a [from, module, args] row'),
    (model(layers=[[-1, 'FFDens', [10]]]), 'layers[0]',
     "unknown module 'FFDens' (known: FFDense)"),
    (model(layers=[[0, 'FFDense', [10]]]), 'layers[0].from', 'must be -1 (previous layer), got 0'),
    (model(layers=[[-1, 'FFDense', [10]], [1, 'FFDense', [10]]]), 'layers[1].from',
     'must be -1 (previous layer) or an earlier layer index 0..0, got 1'),
    (model(layers=[[-1, 'FFDense', [10]], [-2, 'FFDense', [10]]]), 'layers[1].from', 'got -2'),
    (model(layers=[[-1, 'FFDense', [0]]]), 'layers[0].args',
     'out_features must be an integer >= 1, got 0'),
    (model(layers=[[-1, 'FFDense', [10, {}, 3]]]), 'layers[0].args',
     'FFDense args must be [out_features] or [out_features, {overrides}]'),
    (model(layers=[[-1, 'FFDense', [10, {'lr': 0}]]]), 'layers[0].args[1].lr', 'lr must be > 0.0'),
    (model(layers=[[-1, 'FFDense', [10, {'speed': 1}]]]), 'layers[0].args[1].speed',
     'unknown key'),
]


@pytest.mark.parametrize('data, key, message', BAD_MODELS, ids=[case[1] for case in BAD_MODELS])
def test_model_errors_name_the_key(layer_types, data, key, message):
    with pytest.raises(ConfigError) as caught:
        load_model_config(data, layer_types)
    assert caught.value.source == '<dict>'
    assert caught.value.key == key
    assert str(caught.value).startswith(f'<dict>: {key}: ')
    assert message in str(caught.value)


def test_module_must_be_in_the_layer_config_too():
    ports = {'inputs': {'train': MSG}, 'outputs': {'train': MSG}}
    only_other = load_layer_config({'layer_types': {'FFConv': ports}})
    with pytest.raises(ConfigError, match=r"layers\[0\]: unknown module 'FFDense' \(known: \)"):
        load_model_config(MODEL, only_other)


def test_errors_name_the_file(tmp_path, layer_types):
    path = tmp_path / 'm.yaml'
    path.write_text(yaml.safe_dump(model(layers=[[-1, 'FFDense', [10]], [-1, 'FFDens', [10]]])))
    with pytest.raises(ConfigError) as caught:
        load_model_config(path, layer_types)
    assert str(caught.value) == f"{path}: layers[1]: unknown module 'FFDens' (known: FFDense)"


@pytest.mark.parametrize('text, message', [
    ('name: [unclosed', 'invalid YAML'),
    ('- just\n- a list\n', 'the top level must be a mapping, got list'),
    ('', 'the top level must be a mapping, got null'),
])
def test_unreadable_yaml(tmp_path, layer_types, text, message):
    path = tmp_path / 'bad.yaml'
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as caught:
        load_model_config(path, layer_types)
    assert str(caught.value).startswith(f'{path}: ')


def test_missing_file(tmp_path, layer_types):
    path = tmp_path / 'absent.yaml'
    with pytest.raises(ConfigError, match=f'{path}: cannot read the file'):
        load_model_config(path, layer_types)


# ----------------------------------------------------------------------------- layer config errors

def layer_config(**ffdense):
    ports = {'inputs': {'train': MSG}, 'outputs': {'train': MSG}}
    return {'layer_types': {'FFDense': {**ports, **ffdense}}}


BAD_LAYER_CONFIGS = [
    ({}, 'layer_types', 'required key is missing'),
    ({'layer_types': {}, 'extra': 1}, 'extra', 'unknown key (known: layer_types)'),
    ({'layer_types': {}}, 'layer_types', 'must list at least one layer type'),
    ({'layer_types': ['FFDense']}, 'layer_types', 'must be a mapping, got list'),
    ({'layer_types': {'FFDense': {'inputs': {'train': MSG}}}}, 'layer_types.FFDense.outputs',
     'required key'),
    (layer_config(params={}), 'layer_types.FFDense.params',
     'unknown key (known: inputs, outputs, fused)'),
    (layer_config(inputs={}), 'layer_types.FFDense.inputs', 'must name at least one port'),
    (layer_config(inputs={'train': 'TensorChunk'}), 'layer_types.FFDense.inputs.train',
     "must be a message type like pkg/msg/Name, got 'TensorChunk'"),
    (layer_config(outputs={'train': 'dff_msgs/srv/Create'}), 'layer_types.FFDense.outputs.train',
     'pkg/msg/Name'),
    (layer_config(outputs={'Train': MSG}), 'layer_types.FFDense.outputs.Train',
     'lower_case port name'),
]


@pytest.mark.parametrize('data, key, message', BAD_LAYER_CONFIGS,
                         ids=[case[1] for case in BAD_LAYER_CONFIGS])
def test_layer_config_errors(data, key, message):
    with pytest.raises(ConfigError) as caught:
        load_layer_config(data)
    assert caught.value.key == key
    assert str(caught.value).startswith(f'<dict>: {key}: ')
    assert message in str(caught.value)


# ----------------------------------------------------------------------------- no eval

def test_strings_are_never_evaluated(layer_types, tmp_path):
    marker = tmp_path / 'evaluated'
    payload = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    with pytest.raises(ConfigError):
        load_model_config(model(training={'epochs': payload}), layer_types)
    path = tmp_path / 'm.yaml'
    path.write_text(f'name: !!python/object/apply:os.system ["touch {marker}"]\n')
    with pytest.raises(ConfigError, match='invalid YAML'):  # safe_load refuses python tags
        load_model_config(path, layer_types)
    assert not marker.exists()


def test_config_module_has_no_eval_or_exec():
    tree = ast.parse(inspect.getsource(config_module))
    called = {node.func.id for node in ast.walk(tree)
              if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
    assert not called & {'eval', 'exec', 'compile'}
