"""
Layer and model configuration: parsing and validation in one place (yaml.safe_load, no eval).

Every error is a ConfigError whose message names the file and the key, e.g.
`params/models/m.yaml: layers[1]: unknown module 'FFDens' (known: FFDense)`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
import math
from pathlib import Path
import re
from typing import Any, Mapping, Sequence

from dff_lifecycle.common.ports import INPUT_PORTS, OUTPUT_PORTS, PEER_PORTS
from dff_lifecycle.common.yaml_errors import yaml_error_text
from dff_lifecycle.core.data.image_folder import (ImageFolderError, ImageFolderSpec,
                                                  scan_image_folder)
from dff_lifecycle.core.ff.head import HeadConfig
from dff_lifecycle.core.ff.layers import LAYER_TYPES
from dff_lifecycle.core.hyperparams import FFHyperParams, field_names, OBJECTIVES
from dff_lifecycle.core.stage.model_graph import GraphError, group_stages, Stage
import yaml

MODEL_NAME_RE = re.compile(r'[a-z][a-z0-9_]*\Z')  # model names become parts of ROS names
PORT_RE = re.compile(r'[a-z][a-z0-9_]*\Z')
MSG_TYPE_RE = re.compile(r'[A-Za-z][A-Za-z0-9_]*/msg/[A-Z][A-Za-z0-9]*\Z')
# What each dataset loader produces (core/data/datasets.py): input shape and class count.
DATASET_SHAPES: dict[str, tuple[tuple[int, ...], int]] = {
    'mnist': ((784,), 10),
    'cifar10': ((3, 32, 32), 10),
}
# Their images, for conv models (input_shape may be any shape of the same size).
IMAGE_SHAPES: dict[str, tuple[int, ...]] = {'mnist': (1, 28, 28), 'cifar10': (3, 32, 32)}
TRAINING_MODES = ('minibatch', 'full_batch')
NEGATIVE_KINDS = ('random', 'permuted', 'hard', 'self_contrastive')
DICT_SOURCE = '<dict>'


class ConfigError(ValueError):
    """A configuration problem; `str(err)` is `<file>: <key>: <problem>`."""

    def __init__(self, source: str, key: str, problem: str) -> None:
        key, problem = _printable(key), _printable(problem)
        super().__init__(f'{source}: {key}: {problem}' if key else f'{source}: {problem}')
        self.source, self.key, self.problem = source, key, problem


def _printable(text: str) -> str:
    """`text` on one line: characters that are not printable (a newline in a key) escaped."""
    if text.isprintable():
        return text
    return ''.join(c if c.isprintable() else c.encode('unicode_escape').decode('ascii')
                   for c in text)


FUSED_PLACES = ('before', 'after')


@dataclass(frozen=True)
class LayerTypeSpec:
    """
    Ports of one layer type: port name -> ROS message type (`pkg/msg/Name`).

    A parameter-free type has no node, hence no ports: `fused` says where it runs, in
    the stage of the trainable layer it precedes ('before': a Concat) or follows
    ('after': pools, Flatten).
    """

    name: str
    inputs: Mapping[str, str]
    outputs: Mapping[str, str]
    fused: str = ''


@dataclass(frozen=True)
class TrainingConfig:
    mode: str = 'minibatch'          # minibatch | full_batch
    batch_size: int = 1000           # minibatch only
    epochs: int = 10                 # minibatch only
    steps_per_layer: int = 1000      # full_batch only: optimisation steps per layer
    train_limit: int | None = None   # first N training samples (None: all)
    test_limit: int | None = None
    eval_batch_size: int = 1000      # samples per inference batch
    # Supervised: training samples the train accuracy is measured on (0: not measured; it
    # costs one pass per label candidate, as the test set does).
    train_eval_limit: int = 10_000
    seed: int = 0
    # Supervised only. 'random': a uniformly random wrong label. 'permuted': the batch's labels
    # shuffled, so about 1 in C negatives carries the true label (the mpezeshki reference).
    # 'hard' (minibatch only): from the second epoch on, each wrong label is drawn with
    # probability softmax(goodness / temperature) over the wrong labels, scored by the model
    # as it stands at the epoch's start (Hinton 2022, section 3.3).
    # Unsupervised: 'random' (the default) draws hybrid images; 'self_contrastive' (SCFF,
    # Chen et al. 2025) stacks each image with itself (positive) or with another image of the
    # batch (negative) along the channels, and infers on an image stacked with itself.
    negatives: str = 'random'        # random | permuted | hard | self_contrastive
    hard_negative_temperature: float = 1.0
    # Augmentation of training images (core.augment): a random rotation by up to this many
    # degrees either way and a random scaling by up to this fraction (0: off), then a random
    # crop of the image padded by this many pixels (0: off), and a random left-right flip.
    augment_rotate: float = 0.0
    augment_scale: float = 0.0
    augment_crop: int = 0
    augment_flip: bool = False
    # The learning curve (supervised, minibatch, one process): the test accuracy on the
    # first `curve_samples` test images every `curve_every` epochs (0: off), written to
    # curve.json as it goes and drawn against training time.
    curve_every: int = 0
    curve_samples: int = 2000


@dataclass(frozen=True)
class LayerSpecConfig:
    """
    One resolved row; source_index is an absolute row index, -1 = the model input.

    `sources` lists every row it reads (several for a Concat; source_index is the first).
    Shapes leave out the batch dim; in_features and out_features are their sizes.
    """

    index: int
    source_index: int
    module: str
    args: tuple[Any, ...]
    in_features: int
    out_features: int
    hparams: FFHyperParams
    seed: int
    sources: tuple[int, ...] = ()
    in_shape: tuple[int, ...] = ()
    out_shape: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not self.sources:
            object.__setattr__(self, 'sources', (self.source_index,))
        if not self.in_shape:
            object.__setattr__(self, 'in_shape', (self.in_features,))
        if not self.out_shape:
            object.__setattr__(self, 'out_shape', (self.out_features,))

    @property
    def trainable(self) -> bool:
        return LAYER_TYPES[self.module].trainable


@dataclass(frozen=True)
class ModelConfig:
    name: str
    dataset: str
    supervised: bool
    num_classes: int
    input_shape: tuple[int, ...]
    goodness_layers: tuple[int, ...]
    feature_layers: tuple[int, ...]
    head: HeadConfig | None
    layer_defaults: FFHyperParams
    training: TrainingConfig
    layers: tuple[LayerSpecConfig, ...]
    source: str = field(default=DICT_SOURCE, compare=False)  # file it came from, for messages
    stages: tuple[Stage, ...] = ()  # the trainable rows with their fused rows (model_graph)
    # The layer config it was checked against: each type's ports (plan wires nodes by them).
    layer_types: Mapping[str, LayerTypeSpec] = field(default_factory=dict, compare=False)
    image_folder: ImageFolderSpec | None = None  # dataset: {type: image_folder, ...}

    def __post_init__(self) -> None:
        if not self.stages:
            object.__setattr__(self, 'stages', group_stages(self.layers, self.input_shape))

    def stage(self, index: int) -> Stage:
        """Return the stage headed by trainable row `index`."""
        for stage in self.stages:
            if stage.index == index:
                return stage
        raise KeyError(f'row {index} is not a trainable layer')

    @property
    def self_contrastive(self) -> bool:
        """Return True when the layers read two images stacked along the channels (SCFF)."""
        return self.training.negatives == 'self_contrastive'

    @property
    def image_shape(self) -> tuple[int, ...]:
        """Return the shape of one image (input_shape is two of them under self_contrastive)."""
        if self.self_contrastive:
            return (self.input_shape[0] // 2, *self.input_shape[1:])
        return self.input_shape

    @property
    def objective(self) -> str:
        """Return what every layer learns: pos_neg or class_groups (one per model)."""
        return self.layer_defaults.objective

    @property
    def class_groups(self) -> bool:
        """Return True when the layers learn class groups from labelled batches."""
        return self.objective == 'class_groups'

    @property
    def overlays_labels(self) -> bool:
        """Return True when labels are written into the input (supervised pos_neg)."""
        return self.supervised and not self.class_groups

    @property
    def trainable_layers(self) -> tuple[LayerSpecConfig, ...]:
        """Return the rows that train, one per stage (and per layer node), in order."""
        return tuple(self.layers[stage.index] for stage in self.stages)

    def with_schedule_horizon(self, batches: int) -> 'ModelConfig':
        """
        Return this config with every scheduled layer's schedule_batches filled.

        `batches` is how many batches each layer trains on in this run (core.stage.batches'
        count_batches); layers with a constant rate, or a horizon set in the config, keep theirs.
        """
        layers = tuple(dataclasses.replace(spec, hparams=spec.hparams.with_schedule_horizon(
            batches)) for spec in self.layers)
        return dataclasses.replace(
            self, layers=layers,
            layer_defaults=self.layer_defaults.with_schedule_horizon(batches))

    def to_dict(self) -> dict[str, Any]:
        """Plain data that load_model_config accepts again (and yaml.safe_dump can write)."""
        return {
            'name': self.name,
            'dataset': (self.image_folder.to_dict() if self.image_folder is not None
                        else self.dataset),
            'supervised': self.supervised,
            'num_classes': self.num_classes,
            'input_shape': list(self.image_shape),
            'goodness_layers': list(self.goodness_layers),
            'feature_layers': list(self.feature_layers),
            'head': None if self.head is None else dataclasses.asdict(self.head),
            'layer_defaults': dataclasses.asdict(self.layer_defaults),
            'training': dataclasses.asdict(self.training),
            'layers': [[_from_value(spec), spec.module,
                        [dict(a) if isinstance(a, Mapping) else a for a in spec.args]]
                       for spec in self.layers],
        }


def _from_value(spec: LayerSpecConfig) -> int | list[int]:
    """YOLOv5 `from` of a row: -1 for the previous row, else absolute; a list for several."""
    values = [-1 if source == spec.index - 1 else source for source in spec.sources]
    return values if len(spec.sources) > 1 else values[0]


class _Reader:
    """Typed access to one config mapping; every failure names the source file and the key."""

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(self.source, key, problem)

    def mapping(self, key: str, value: Any) -> dict:
        if not isinstance(value, Mapping):
            raise self.error(key, f'must be a mapping, got {_kind(value)}')
        return dict(value)

    def keys(self, key: str, value: Any, known: Sequence[str],
             required: Sequence[str] = ()) -> dict:
        """Return the mapping `value`, refusing keys outside `known` and requiring `required`."""
        value = self.mapping(key, value)
        for name in value:
            if name not in known:
                raise self.error(_join(key, name), f'unknown key (known: {", ".join(known)})')
        for name in required:
            if name not in value:
                raise self.error(_join(key, name), 'required key is missing')
        return dict(value)

    def integer(self, key: str, value: Any, minimum: int, allow_none: bool = False) -> int | None:
        if value is None and allow_none:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            expected = 'an integer or null' if allow_none else 'an integer'
            raise self.error(key, f'must be {expected}, got {_kind(value)}')
        if value < minimum:
            raise self.error(key, f'must be >= {minimum}, got {value}')
        return value

    def number(self, key: str, value: Any, minimum: float, exclusive: bool) -> float:
        is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not is_number or not math.isfinite(value):
            raise self.error(key, f'must be a finite number, got {_kind(value)}')
        if value < minimum or (exclusive and value == minimum):
            raise self.error(key, f'must be {">" if exclusive else ">="} {minimum}, got {value}')
        return float(value)

    def boolean(self, key: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise self.error(key, f'must be true or false, got {_kind(value)}')
        return value

    def choice(self, key: str, value: Any, choices: Sequence[str]) -> str:
        if value not in choices:
            raise self.error(key, f'must be one of {", ".join(choices)}, got {value!r}')
        return value

    def pattern(self, key: str, value: Any, regex: re.Pattern, meaning: str) -> str:
        if not isinstance(value, str) or not regex.match(value):
            raise self.error(key, f'must be {meaning}, got {value!r}')
        return value

    def int_list(self, key: str, value: Any, minimum: int, maximum: int) -> tuple[int, ...]:
        if not isinstance(value, list) or not value:
            raise self.error(key, f'must be a non-empty list, got {_kind(value)}')
        items = tuple(self.integer(f'{key}[{i}]', v, minimum) for i, v in enumerate(value))
        for i, item in enumerate(items):
            if item > maximum:
                raise self.error(f'{key}[{i}]', f'must be <= {maximum}, got {item}')
            if item in items[:i]:
                raise self.error(f'{key}[{i}]', f'duplicate value {item}')
        return items


def _join(prefix: str, name: Any) -> str:
    return f'{prefix}.{name}' if prefix else str(name)


def _kind(value: Any) -> str:
    return 'null' if value is None else f'{type(value).__name__} {value!r}'


def _read_mapping(path_or_dict: str | Path | Mapping[str, Any]) -> tuple[dict, str]:
    """Read the top-level mapping of a YAML file (or a dict as is) and the name for messages."""
    if isinstance(path_or_dict, Mapping):
        return dict(path_or_dict), DICT_SOURCE
    source = str(path_or_dict)
    try:
        text = Path(path_or_dict).read_text(encoding='utf-8')
    except OSError as err:
        raise ConfigError(source, '', f'cannot read the file ({err.strerror or err})') from err
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(source, '', f'invalid YAML at {yaml_error_text(err)}') from err
    if not isinstance(data, Mapping):
        raise ConfigError(source, '', f'the top level must be a mapping, got {_kind(data)}')
    return dict(data), source


# --------------------------------------------------------------------------- layer config

def load_layer_config(path_or_dict: str | Path | Mapping[str, Any]) -> dict[str, LayerTypeSpec]:
    """Parse `layer_types: {Type: {inputs: {port: pkg/msg/Name}, outputs: {...}}}`."""
    data, source = _read_mapping(path_or_dict)
    read = _Reader(source)
    read.keys('', data, known=('layer_types',), required=('layer_types',))
    types = read.mapping('layer_types', data['layer_types'])
    if not types:
        raise read.error('layer_types', 'must list at least one layer type')
    specs = {}
    for name, body in types.items():
        key = f'layer_types.{name}'
        if isinstance(body, Mapping) and 'fused' in body:
            body = read.keys(key, body, known=('fused',))
            fused = read.choice(f'{key}.fused', body['fused'], FUSED_PLACES)
            specs[str(name)] = LayerTypeSpec(str(name), {}, {}, fused)
            continue
        body = read.keys(key, body, known=('inputs', 'outputs', 'fused'),
                         required=('inputs', 'outputs'))
        ports = {side: _ports(read, f'{key}.{side}', body[side], side)
                 for side in ('inputs', 'outputs')}
        specs[str(name)] = LayerTypeSpec(str(name), ports['inputs'], ports['outputs'])
    return specs


def _ports(read: _Reader, key: str, value: Any, side: str) -> dict[str, str]:
    ports = read.mapping(key, value)
    if not ports:
        raise read.error(key, 'must name at least one port')
    known = {port: msg for port, msg in (INPUT_PORTS if side == 'inputs'
                                         else OUTPUT_PORTS).items() if port not in PEER_PORTS}
    for port, msg_type in ports.items():
        read.pattern(f'{key}.{port}', port, PORT_RE, 'a lower_case port name')
        read.pattern(f'{key}.{port}', msg_type, MSG_TYPE_RE, 'a message type like pkg/msg/Name')
        # A layer node knows these ports and carries one message type on each: a config
        # naming another would be accepted here and fail (or be ignored) at deployment.
        if port not in known:
            raise read.error(f'{key}.{port}', f'a layer node has no {side[:-1]} port {port!r} '
                             f'(known: {", ".join(known)})')
        if msg_type != known[port]:
            raise read.error(f'{key}.{port}', f'port {port!r} carries {known[port]}, '
                             f'not {msg_type}')
    return ports


# --------------------------------------------------------------------------- model config

MODEL_KEYS = ('name', 'dataset', 'supervised', 'num_classes', 'input_shape', 'goodness_layers',
              'feature_layers', 'head', 'layer_defaults', 'training', 'layers')
REQUIRED_MODEL_KEYS = ('name', 'dataset', 'supervised', 'layers')


def load_model_config(path_or_dict: str | Path | Mapping[str, Any],
                      layer_types: Mapping[str, LayerTypeSpec]) -> ModelConfig:
    """Parse and validate a YOLOv5-style model config against the registry and the layer config."""
    data, source = _read_mapping(path_or_dict)
    read = _Reader(source)
    read.keys('', data, known=MODEL_KEYS, required=REQUIRED_MODEL_KEYS)
    name = read.pattern('name', data['name'], MODEL_NAME_RE, 'lower_snake_case ([a-z][a-z0-9_]*)')
    folder = None
    if isinstance(data['dataset'], Mapping):  # your own images
        folder = _image_folder(read, data['dataset'], source)
        dataset = 'image_folder'
    else:
        dataset = read.choice('dataset', data['dataset'], tuple(DATASET_SHAPES))
    supervised = read.boolean('supervised', data['supervised'])
    input_shape, num_classes = _dataset_interface(read, data, dataset, folder)
    training = _training(read, data.get('training') or {})
    if training.negatives == 'self_contrastive':
        if supervised:
            raise read.error('training.negatives', 'self_contrastive pairs images with '
                             'themselves and with others, without labels: it needs '
                             'supervised: false')
        if len(input_shape) != 3:
            raise read.error('input_shape', 'self_contrastive stacks two images along the '
                             'channels, so it needs an image shape, e.g. '
                             f'{list(IMAGE_SHAPES.get(dataset, input_shape))}')
        input_shape = (2 * input_shape[0], *input_shape[1:])  # the layers read image pairs
    raw_defaults = read.keys('layer_defaults', data.get('layer_defaults') or {},
                             known=field_names())
    objective = _objective(read, raw_defaults, data['layers'], supervised)
    defaults = _hparams(read, 'layer_defaults', FFHyperParams(),
                        {**raw_defaults, **_objective_settings(read, raw_defaults, objective,
                                                               num_classes)})
    layers = _layers(read, data['layers'], layer_types, input_shape, defaults, training.seed)
    _check_objective(read, layers, defaults, supervised, training, num_classes)
    try:
        stages = group_stages(layers, input_shape)
    except GraphError as err:
        raise read.error(f'layers[{err.row}]', str(err)) from err
    last = len(layers) - 1
    trainable = [row.index for row in layers if row.trainable]
    # class_groups: the last layer's class logits by default (earlier conv layers classify
    # from their map's mean goodness, a weaker vote); pos_neg: every layer's goodness.
    goodness_default = trainable[-1:] if defaults.objective == 'class_groups' else trainable
    goodness_layers = _trainable_list(read, 'goodness_layers',
                                      data.get('goodness_layers', goodness_default), last, layers)
    feature_layers = _trainable_list(read, 'feature_layers',
                                     data.get('feature_layers', trainable), last, layers)
    head = _head(read, data.get('head'), supervised)
    if training.negatives == 'permuted' and not supervised:
        raise read.error('training.negatives', 'permuted negatives shuffle labels, so they need '
                         'a supervised model')
    if training.negatives == 'hard' and not (supervised and training.mode == 'minibatch'):
        raise read.error('training.negatives', 'hard negatives pick wrong labels, so they need '
                         'a supervised model trained in minibatch mode')
    if training.curve_every and not (supervised and training.mode == 'minibatch'):
        raise read.error('training.curve_every', 'the learning curve scores test images by '
                         'goodness after each epoch, so it needs a supervised model trained in '
                         'minibatch mode (an unsupervised model is scored by a head trained at '
                         'the end)')
    return ModelConfig(name, dataset, supervised, num_classes, input_shape, goodness_layers,
                       feature_layers, head, defaults, training, layers, source, stages,
                       dict(layer_types), folder)


def _objective(read: _Reader, raw_defaults: Mapping[str, Any], rows: Any,
               supervised: bool) -> str:
    """
    Return the model's objective: as layer_defaults names it, else the one that learns.

    A supervised model with a conv row gets class_groups: the pos_neg overlay writes the
    label into the first pixels, which a shared-weight conv sees at a few border positions
    only, so its candidates are indistinguishable.
    """
    if 'objective' in raw_defaults:
        return read.choice('layer_defaults.objective', raw_defaults['objective'], OBJECTIVES)
    has_conv = isinstance(rows, list) and any(
        isinstance(row, list) and len(row) == 3 and row[1] == 'FFConv2d' for row in rows)
    return 'class_groups' if supervised and has_conv else 'pos_neg'


def _objective_settings(read: _Reader, raw_defaults: Mapping[str, Any], objective: str,
                        num_classes: int) -> dict[str, Any]:
    """Return the objective and its group count (one group per class), as layer defaults."""
    groups = num_classes if objective == 'class_groups' else 0
    given = raw_defaults.get('groups', groups)
    if given != groups:
        raise read.error('layer_defaults.groups', f'is set from the model: {groups} for the '
                         f'{objective} objective of a {num_classes}-class model; leave it out '
                         f'(got {given!r})')
    return {'objective': objective, 'groups': groups}


def _check_objective(read: _Reader, layers: Sequence[LayerSpecConfig], defaults: FFHyperParams,
                     supervised: bool, training: TrainingConfig, num_classes: int) -> None:
    objective = defaults.objective
    for row in layers:
        if not row.trainable:
            continue
        key = f'layers[{row.index}]'
        if (row.hparams.objective, row.hparams.groups) != (objective, defaults.groups):
            raise read.error(f'{key}.args', f'every layer of a model learns one objective '
                             f'(layer_defaults.objective: {objective}); set it there, not per '
                             'layer')
        if objective == 'class_groups' and row.out_shape[0] % num_classes:
            what = 'out_channels' if row.module == 'FFConv2d' else 'out_features'
            raise read.error(f'{key}.args', f'the class_groups objective splits the '
                             f'{row.out_shape[0]} {what} of this {row.module} into '
                             f'{num_classes} equal class groups: use a multiple of '
                             f'{num_classes}')
        if (objective == 'pos_neg' and supervised and row.module == 'FFConv2d'
                and -1 in row.sources):
            raise read.error(key, 'a supervised FFConv2d cannot learn from the label overlay '
                             '(written into the first pixels, which shared conv weights see '
                             'at a few border positions only): set layer_defaults.objective: '
                             'class_groups')
    if objective != 'class_groups':
        return
    if not supervised:
        raise read.error('layer_defaults.objective', 'class_groups learns from the labels, so '
                         'it needs supervised: true')
    if training.mode != 'minibatch':
        raise read.error('training.mode', 'the class_groups objective trains in minibatch mode')
    if training.negatives != 'random':
        raise read.error('training.negatives', 'the class_groups objective uses no negatives; '
                         'leave training.negatives out')


def _trainable_list(read: _Reader, key: str, value: Any, last: int,
                    layers: Sequence[LayerSpecConfig]) -> tuple[int, ...]:
    items = read.int_list(key, value, 0, last)
    for position, index in enumerate(items):
        if not layers[index].trainable:
            raise read.error(f'{key}[{position}]', f'row {index} is a {layers[index].module}, '
                             'which trains nothing: name FFDense or FFConv2d rows (a stage '
                             'reports the output of its fused pools)')
    return items


IMAGE_FOLDER_KEYS = ('type', 'root', 'size', 'channels', 'test_split')


def _image_folder(read: _Reader, value: Mapping[str, Any], source: str) -> ImageFolderSpec:
    """`dataset: {type: image_folder, root, size, channels, test_split}`, scanned."""
    raw = read.keys('dataset', value, known=IMAGE_FOLDER_KEYS, required=('type', 'root'))
    read.choice('dataset.type', raw['type'], ('image_folder',))
    if not isinstance(raw['root'], str) or not raw['root'].strip():
        raise read.error('dataset.root', f'must be a folder path, got {raw["root"]!r}')
    root = Path(raw['root']).expanduser()
    if not root.is_absolute() and source != DICT_SOURCE:  # beside the model config
        root = Path(source).resolve().parent / root
    size = None
    if raw.get('size') is not None:
        size = raw['size']
        if (not isinstance(size, list) or len(size) != 2
                or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0
                           for d in size)):
            raise read.error('dataset.size', f'must be [height, width] in pixels, got {size!r}')
        size = (size[0], size[1])
    channels = read.integer('dataset.channels', raw.get('channels', 3), 1)
    if channels not in (1, 3):
        raise read.error('dataset.channels', f'must be 1 (grey) or 3 (RGB), got {channels}')
    test_split = read.number('dataset.test_split', raw.get('test_split', 0.2), 0.0, True)
    if test_split >= 1:
        raise read.error('dataset.test_split', f'must be below 1, got {test_split}')
    try:
        return scan_image_folder(root, size, channels, test_split)
    except ImageFolderError as err:
        raise read.error('dataset', str(err)) from None


def _dataset_interface(read: _Reader, data: dict, dataset: str,
                       folder: ImageFolderSpec | None = None) -> tuple[tuple[int, ...], int]:
    """input_shape and num_classes are optional; when given they must match the loader's output."""
    if folder is not None:
        shape, classes = folder.image_shape, len(folder.classes)
    else:
        shape, classes = DATASET_SHAPES[dataset]
    if 'input_shape' in data:
        given = data['input_shape']
        fits = (isinstance(given, list) and given
                and all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in given)
                and math.prod(given) == math.prod(shape))
        if not fits:
            raise read.error('input_shape', f'{dataset} inputs have shape {list(shape)} '
                             f'({math.prod(shape)} values; any shape of that size, e.g. '
                             f'{list(IMAGE_SHAPES.get(dataset, shape))}), got {given!r}')
        shape = tuple(given)
    if 'num_classes' in data:
        given = read.integer('num_classes', data['num_classes'], 2)
        if given != classes:
            raise read.error('num_classes', f'{dataset} has {classes} classes, got {given}')
    return shape, classes


def _training(read: _Reader, value: Any) -> TrainingConfig:
    names = tuple(f.name for f in dataclasses.fields(TrainingConfig))
    raw = read.keys('training', value, known=names)
    merged = {**dataclasses.asdict(TrainingConfig()), **raw}
    key = lambda name: f'training.{name}'  # noqa: E731 - short local helper for messages
    return TrainingConfig(
        mode=read.choice(key('mode'), merged['mode'], TRAINING_MODES),
        batch_size=read.integer(key('batch_size'), merged['batch_size'], 2),
        epochs=read.integer(key('epochs'), merged['epochs'], 1),
        steps_per_layer=read.integer(key('steps_per_layer'), merged['steps_per_layer'], 1),
        train_limit=read.integer(key('train_limit'), merged['train_limit'], 2, allow_none=True),
        test_limit=read.integer(key('test_limit'), merged['test_limit'], 1, allow_none=True),
        eval_batch_size=read.integer(key('eval_batch_size'), merged['eval_batch_size'], 1),
        train_eval_limit=read.integer(key('train_eval_limit'), merged['train_eval_limit'], 0),
        seed=read.integer(key('seed'), merged['seed'], 0),
        negatives=read.choice(key('negatives'), merged['negatives'], NEGATIVE_KINDS),
        hard_negative_temperature=read.number(key('hard_negative_temperature'),
                                              merged['hard_negative_temperature'], 0.0,
                                              exclusive=True),
        augment_rotate=_at_most(read, key('augment_rotate'),
                                read.number(key('augment_rotate'), merged['augment_rotate'],
                                            0.0, exclusive=False), 180.0),
        augment_scale=_at_most(read, key('augment_scale'),
                               read.number(key('augment_scale'), merged['augment_scale'],
                                           0.0, exclusive=False), 0.5),
        augment_crop=read.integer(key('augment_crop'), merged['augment_crop'], 0),
        augment_flip=read.boolean(key('augment_flip'), merged['augment_flip']),
        curve_every=read.integer(key('curve_every'), merged['curve_every'], 0),
        curve_samples=read.integer(key('curve_samples'), merged['curve_samples'], 1),
    )


def _at_most(read: _Reader, key: str, value: float, maximum: float) -> float:
    if value > maximum:
        raise read.error(key, f'must be <= {maximum:g}, got {value:g}')
    return value


def _hparams(read: _Reader, key: str, base: FFHyperParams, overrides: Any) -> FFHyperParams:
    overrides = read.keys(key, overrides, known=field_names())
    for name, value in overrides.items():  # one at a time, so the message names the bad key
        try:
            base.with_overrides({name: value})
        except ValueError as err:
            raise read.error(f'{key}.{name}', str(err)) from err
    return base.with_overrides(overrides)


def _layers(read: _Reader, rows: Any, layer_types: Mapping[str, LayerTypeSpec],
            input_shape: tuple[int, ...], defaults: FFHyperParams,
            seed: int) -> tuple[LayerSpecConfig, ...]:
    if not isinstance(rows, list) or not rows:
        raise read.error('layers', 'must be a non-empty list of [from, module, args] rows, '
                                   f'got {_kind(rows)}')
    known = sorted(set(LAYER_TYPES) & set(layer_types))
    specs: list[LayerSpecConfig] = []
    for index, row in enumerate(rows):
        key = f'layers[{index}]'
        if not isinstance(row, list) or len(row) != 3:
            raise read.error(key, f'must be a [from, module, args] row, got {row!r}')
        source_from, module, args = row
        if module not in known:
            raise read.error(key, f'unknown module {module!r} (known: {", ".join(known)})')
        kind = LAYER_TYPES[module]
        if kind.trainable == bool(layer_types[module].fused):
            want = 'inputs and outputs (it trains, as a node)' if kind.trainable else 'fused'
            raise read.error(key, f'{module} needs {want} in the layer config, which '
                             'says otherwise')
        sources = _sources(read, key, source_from, index, kind.max_inputs)
        try:
            parsed = kind.parse_args(args)
            in_shapes = [input_shape if s < 0 else specs[s].out_shape for s in sources]
            out_shape = kind.out_shape(in_shapes, args)
        except ValueError as err:
            raise read.error(f'{key}.args', str(err)) from err
        in_shape = out_shape if len(sources) > 1 else in_shapes[0]  # a Concat: the joined
        hparams = _hparams(read, f'{key}.args[{len(args) - 1}]', defaults, parsed.overrides)
        specs.append(LayerSpecConfig(index, sources[0], module, tuple(args),
                                     math.prod(in_shape), math.prod(out_shape), hparams,
                                     seed * 1000 + index, sources, tuple(in_shape),
                                     tuple(out_shape)))
    return tuple(specs)


def _sources(read: _Reader, key: str, value: Any, index: int, max_inputs: int
             ) -> tuple[int, ...]:
    """`from` as absolute row indices: one int, or a list for rows that join several."""
    if isinstance(value, list) and max_inputs > 1:
        if not 2 <= len(value) <= max_inputs:
            raise read.error(f'{key}.from', f'must list 2..{max_inputs} rows, got {value!r}')
        sources = tuple(_source_index(read, key, item, index) for item in value)
        if len(set(sources)) != len(sources):
            raise read.error(f'{key}.from', f'names a row twice: {value!r}')
        return sources
    if isinstance(value, list):
        raise read.error(f'{key}.from', 'only a Concat reads several rows; got a list '
                         f'{value!r}')
    return (_source_index(read, key, value, index),)


def _source_index(read: _Reader, key: str, value: Any, index: int) -> int:
    """YOLOv5 `from`: -1 = previous layer (the model input for layer 0), else an earlier index."""
    if isinstance(value, bool) or not isinstance(value, int) or not -1 <= value < index:
        earlier = f' or an earlier layer index 0..{index - 1}' if index else ''
        raise read.error(f'{key}.from', f'must be -1 (previous layer){earlier}, got {value!r}')
    return index - 1 if value == -1 else value


HEAD_RULES = {'hidden': ('int', 0), 'epochs': ('int', 1), 'batch_size': ('int', 1),
              'lr': ('positive', 0.0), 'weight_decay': ('number', 0.0),
              'standardise': ('bool', None)}


def _head(read: _Reader, value: Any, supervised: bool) -> HeadConfig | None:
    if value is None:
        if not supervised:
            raise read.error('head', 'unsupervised models need a head '
                                     '(the classifier trained on their features)')
        return None
    if supervised:
        raise read.error('head', 'must be null for supervised models (they predict by goodness)')
    names = tuple(f.name for f in dataclasses.fields(HeadConfig))
    raw = read.keys('head', value, known=names)
    checked = {}
    for name, item in raw.items():
        kind, minimum = HEAD_RULES.get(name, ('number', 0.0))
        if kind == 'int':
            checked[name] = read.integer(f'head.{name}', item, int(minimum))
        elif kind == 'bool':
            checked[name] = read.boolean(f'head.{name}', item)
        else:
            checked[name] = read.number(f'head.{name}', item, minimum,
                                        exclusive=kind == 'positive')
    return HeadConfig(**checked)
