"""
Per-layer FF hyperparameters: the one definition every part derives from.

The model config fills them (defaults, then per-layer overrides), the master
sends them to each layer node as ROS parameters, and the layer node declares
exactly these parameters: `dff_lifecycle.nodes.parameters` builds its table
from the fields below. Plain Python (no torch), so tables and tools import it
cheaply.
"""
import dataclasses
from dataclasses import dataclass, field
import math
from typing import Any, Mapping, Sequence

# The registries that implement these choices (core.objectives, core.ff_layers) are checked
# against these names by the unit tests.
GOODNESS_REDUCTIONS = ('mean', 'sum')
GOODNESS_SCOPES = ('map', 'position')
LOSS_NAMES = ('softplus', 'symba')
OBJECTIVES = ('pos_neg', 'class_groups')
INPUT_NORMS = ('auto', 'length', 'position', 'sample', 'layer', 'batch')  # core.input_norms
RELU_GRADS = ('auto', 'zero', 'full')  # core.ff.layers: ReLU's backward for negative inputs
OPTIMIZER_NAMES = ('adam', 'sgd')
LR_SCHEDULES = ('constant', 'cosine')


def _hp(default: Any, help_text: str, minimum: float | None = None) -> Any:
    return field(default=default, metadata={'help': help_text, 'minimum': minimum})


@dataclass(frozen=True)
class FFHyperParams:
    """Per-layer training settings (defaults from the model config, overridable per layer)."""

    threshold: float = _hp(2.0, 'Goodness threshold theta.', 0.0)
    lr: float = _hp(0.03, 'Learning rate of the layer optimiser.', 0.0)
    goodness: str = _hp('mean', 'Goodness reduction: mean | sum of squared activities.')
    goodness_scope: str = _hp('map', 'Conv layers: map (one goodness per sample, over the '
                              'whole map) | position (one per spatial position, over the '
                              'channels; the loss averages them). Dense layers: ignored.')
    objective: str = _hp('pos_neg', 'What the layer learns: pos_neg (goodness high for '
                         'positive, low for negative data; core.objectives.pos_neg) | '
                         'class_groups (one channel group per class, cross-entropy over '
                         'the group goodness; no negatives; core.objectives.class_groups).')
    groups: int = _hp(0, 'class_groups: how many channel groups (the num_classes of the '
                      'model, set by the config); 0 otherwise.', 0)
    input_norm: str = _hp('auto', 'Input normalisation (core.input_norms): length | position '
                          '| sample | layer | batch | auto (FFDense: length; FFConv2d: sample '
                          'under class_groups, else position).')
    logit_scale: float = _hp(8.0, 'class_groups: the class logits are the group goodness '
                             'times this.', 0.0)
    peer_norm: float = _hp(0.0, 'Weight of peer normalisation (Hinton 2022): a loss on '
                           "each unit's running mean activity (per channel of a conv) "
                           "drawn to the mean over the layer's units, so no unit (and no "
                           'class group) stays silent or dominates; 0: off. With relu_grad '
                           'full it brings silent units back.', 0.0)
    relu_grad: str = _hp('auto', "ReLU's gradient where its input is negative: zero (torch's) "
                         '| full (passed through, as for a positive input: a unit that '
                         "stopped firing can start again; Hinton's FF code does this) | auto "
                         '(full under class_groups, where a class group whose units all '
                         'stopped firing never wins again, else zero).')
    loss: str = _hp('softplus', 'pos_neg: the local loss, softplus | symba.')
    symba_alpha: float = _hp(4.0, 'Scale of the SymBa loss.', 0.0)
    optimizer: str = _hp('adam', 'Optimiser of this layer: adam | sgd.')
    weight_decay: float = _hp(0.0, 'Weight decay of the optimiser.', 0.0)
    lr_schedule: str = _hp('constant', 'How the learning rate moves over training: constant '
                           '| cosine (from lr down to lr * lr_final over schedule_batches '
                           'of the batches this layer trains, half a cosine).')
    lr_final: float = _hp(0.0, 'cosine: the last learning rate, as a fraction of lr.', 0.0)
    schedule_batches: int = _hp(0, 'cosine: how many batches the learning rate falls over; '
                                '0: set by the run (epochs x batches per epoch).', 0)

    def validate(self) -> 'FFHyperParams':
        """Raise ValueError naming the first bad field; return self so calls can chain."""
        _require_number('threshold', self.threshold, minimum=0.0, exclusive=True)
        _require_number('lr', self.lr, minimum=0.0, exclusive=True)
        _require_number('symba_alpha', self.symba_alpha, minimum=0.0, exclusive=True)
        _require_number('logit_scale', self.logit_scale, minimum=0.0, exclusive=True)
        _require_number('weight_decay', self.weight_decay, minimum=0.0, exclusive=False)
        _require_number('peer_norm', self.peer_norm, minimum=0.0, exclusive=False)
        _require_choice('goodness', self.goodness, GOODNESS_REDUCTIONS)
        _require_choice('goodness_scope', self.goodness_scope, GOODNESS_SCOPES)
        _require_choice('loss', self.loss, LOSS_NAMES)
        _require_choice('objective', self.objective, OBJECTIVES)
        _require_choice('input_norm', self.input_norm, INPUT_NORMS)
        _require_choice('relu_grad', self.relu_grad, RELU_GRADS)
        if isinstance(self.groups, bool) or not isinstance(self.groups, int) or self.groups < 0:
            raise ValueError(f'groups must be a whole number >= 0, got {self.groups!r}')
        _require_choice('optimizer', self.optimizer, OPTIMIZER_NAMES)
        _require_choice('lr_schedule', self.lr_schedule, LR_SCHEDULES)
        _require_number('lr_final', self.lr_final, minimum=0.0, exclusive=False)
        if self.lr_final > 1.0:
            raise ValueError(f'lr_final must be <= 1 (a fraction of lr), got {self.lr_final!r}')
        if (isinstance(self.schedule_batches, bool) or not isinstance(self.schedule_batches, int)
                or self.schedule_batches < 0):
            raise ValueError('schedule_batches must be a whole number >= 0, got '
                             f'{self.schedule_batches!r}')
        return self

    def lr_at(self, batch: int) -> float:
        """
        Return the learning rate of the layer's batch number `batch` (counted from 0).

        cosine: lr * (f + (1 - f) * (1 + cos(pi * t)) / 2), t = batch / schedule_batches
        clipped to 1, f = lr_final; with schedule_batches 0 (no horizon known) it stays lr.
        """
        if self.lr_schedule == 'constant' or self.schedule_batches == 0:
            return self.lr
        t = min(1.0, max(0, batch) / self.schedule_batches)
        f = self.lr_final
        return self.lr * (f + (1.0 - f) * 0.5 * (1.0 + math.cos(math.pi * t)))

    def with_schedule_horizon(self, batches: int) -> 'FFHyperParams':
        """Fill schedule_batches from the run when the schedule needs it and none is set."""
        if self.lr_schedule == 'constant' or self.schedule_batches:
            return self
        return dataclasses.replace(self, schedule_batches=max(1, int(batches))).validate()

    def resolved_input_norm(self, conv: bool) -> str:
        """Return the input normalisation in effect for a conv or a dense layer."""
        if self.input_norm != 'auto':
            return self.input_norm
        if not conv:
            return 'length'
        return 'sample' if self.objective == 'class_groups' else 'position'

    def resolved_relu_grad(self) -> str:
        """Return ReLU's backward in effect: 'zero' or 'full'."""
        if self.relu_grad != 'auto':
            return self.relu_grad
        return 'full' if self.objective == 'class_groups' else 'zero'

    def with_overrides(self, overrides: Mapping[str, Any]) -> 'FFHyperParams':
        """Copy with some fields replaced (per-layer `{lr: 0.01}`); unknown keys raise."""
        known = field_names()
        unknown = sorted(set(overrides) - set(known))
        if unknown:
            raise ValueError(f'unknown layer hyperparameter(s) {", ".join(unknown)} '
                             f'(known: {", ".join(known)})')
        return dataclasses.replace(self, **overrides).validate()

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> 'FFHyperParams':
        """Pick the fields out of a larger mapping (a layer node's parameters) and validate."""
        return cls(**{name: values[name] for name in field_names()}).validate()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def field_names() -> tuple[str, ...]:
    """Names of the FFHyperParams fields, in declaration order."""
    return tuple(f.name for f in dataclasses.fields(FFHyperParams))


def field_docs() -> dict[str, tuple[Any, str, float | None]]:
    """{name: (default, description, minimum)} of every field, in declaration order."""
    return {f.name: (f.default, f.metadata['help'], f.metadata['minimum'])
            for f in dataclasses.fields(FFHyperParams)}


def _require_number(name: str, value: Any, minimum: float, exclusive: bool) -> None:
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not is_number or not math.isfinite(value):
        raise ValueError(f'{name} must be a finite number, got {value!r}')
    if value < minimum or (exclusive and value == minimum):
        relation = '>' if exclusive else '>='
        raise ValueError(f'{name} must be {relation} {minimum}, got {value!r}')


def _require_choice(name: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f'{name} must be one of {", ".join(choices)}, got {value!r}')
