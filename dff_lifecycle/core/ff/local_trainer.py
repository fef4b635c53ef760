"""One FF layer with its own optimizer and local loss: the unit a layer node runs."""
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Optional, Union

from dff_lifecycle.core.ff.fused_step import fused_forward_backward, supports_fused
from dff_lifecycle.core.ff.layers import OPTIMIZERS
from dff_lifecycle.core.hyperparams import FFHyperParams
from dff_lifecycle.core.objectives.class_groups import (check_groups, class_group_loss,
                                                        group_goodness,
                                                        silent_group_mask,
                                                        true_and_other_goodness)
from dff_lifecycle.core.objectives.goodness import goodness, position_goodness
from dff_lifecycle.core.objectives.pos_neg import ff_loss
import torch
from torch import nn, Tensor

_STATE_KEYS = ('layer', 'optimizer', 'optimizer_name', 'hparams', 'batches_seen', 'steps_seen')
PEER_MOMENTUM = 0.9  # of the running mean activities peer normalisation compares


@dataclass(frozen=True)
class StepResult:
    """Scalars of the last training step plus that step's detached activities."""

    loss: float
    goodness_pos: float
    goodness_neg: float
    h_pos: Tensor
    h_neg: Tensor
    silent_groups: tuple[int, ...] = ()  # class groups with no activity for any sample


def silent_indices(mask: Tensor) -> tuple[int, ...]:
    """Return the indices of the groups a (K,) 0/1 mask (already on the CPU) marks silent."""
    return tuple(int(i) for i in torch.nonzero(mask).flatten())


def make_optimizer(params: Iterable[nn.Parameter],
                   hparams: FFHyperParams) -> torch.optim.Optimizer:
    """
    Return the layer's optimizer, torch's fused kernel where every parameter allows it.

    The fused Adam step is one pass over each tensor instead of a dozen elementwise ops:
    0.37 ms against 0.94 ms for a 784 x 500 layer on one thread, about a tenth of a batch's
    CPU in the MNIST fast recipe. The same maths (float rounding apart, within 1e-7 after 50
    steps); a saved optimizer state loads into either.
    """
    params = list(params)
    fused = all(p.dtype.is_floating_point and p.device.type in ('cpu', 'cuda') for p in params)
    return OPTIMIZERS[hparams.optimizer](params, lr=hparams.lr, weight_decay=hparams.weight_decay,
                                         fused=fused or None)


class LocalTrainer:
    """
    Trains one layer with its own objective, no gradient leaving the layer.

    pos_neg layers train on (positive, negative) batches (`step`); class_groups layers on
    images with their labels (`step_classes`).
    """

    def __init__(self, layer: nn.Module, hparams: FFHyperParams,
                 device: Union[str, torch.device] = 'cpu') -> None:
        self.hparams = hparams.validate()
        if self.class_groups:  # out_features of a dense layer, out_channels of a conv
            check_groups(self._grouped_units(layer), self.class_groups)
        if hasattr(layer, 'set_input_norm'):  # before the optimizer: BatchNorm's buffers
            layer.set_input_norm(self.hparams.resolved_input_norm(hasattr(layer, 'in_shape')))
        if hasattr(layer, 'set_relu_grad'):
            layer.set_relu_grad(self.hparams.resolved_relu_grad())
        self.device = torch.device(device)
        # Move before building the optimizer so its state lives beside the parameters.
        self.layer = layer.to(self.device)
        self.optimizer = make_optimizer(self.layer.parameters(), hparams)
        self.batches_seen = 0
        self.steps_seen = 0
        self.peer_means: Optional[Tensor] = None  # running mean activity of each unit

    def _grouped_units(self, layer: nn.Module) -> int:
        """Return the units (channels) the class groups divide: this layer's own."""
        return int(layer.weight.shape[0])

    @property
    def class_groups(self) -> int:
        """How many class groups this layer's channels form (0: the pos_neg objective)."""
        return self.hparams.groups if self.hparams.objective == 'class_groups' else 0

    def step_classes(self, x: Tensor, y: Tensor, steps: int = 1) -> StepResult:
        """
        Run `steps` steps of the class-group objective on one labelled batch.

        The result's goodness_pos is the mean goodness of each sample's true group and
        goodness_neg that of its other groups; h_pos holds the activities (of the last
        step's forward, as in `step`) and h_neg is empty.
        """
        groups = self.class_groups
        if not groups:
            raise ValueError('step_classes needs a layer with the class_groups objective')
        if steps < 1:
            raise ValueError(f'steps must be >= 1, got {steps}')
        if y.shape != (x.shape[0],):
            raise ValueError(f'labels must be ({x.shape[0]},), got {tuple(y.shape)}')
        x, y = x.to(self.device), y.to(self.device).long()
        if bool(((y < 0) | (y >= groups)).any()):
            raise ValueError(f'labels must be in 0..{groups - 1}')
        self.layer.train()
        self._schedule_lr()

        def objective(h: Tensor) -> tuple[Tensor, Tensor]:
            g = group_goodness(h, groups, self.hparams.goodness)
            return class_group_loss(g * self.hparams.logit_scale, y), g

        loss, g, h = self._optimise(x, steps, objective)
        true, others = true_and_other_goodness(g.detach(), y)
        self.batches_seen += 1
        self.steps_seen += steps
        scalars = torch.cat([torch.stack([loss.detach(), true.mean(), others.mean()]),
                             silent_group_mask(g).to(true.dtype)]).cpu()  # one sync
        return StepResult(loss=float(scalars[0]), goodness_pos=float(scalars[1]),
                          goodness_neg=float(scalars[2]), h_pos=h.detach(),
                          h_neg=h.new_empty((0, *h.shape[1:])),
                          silent_groups=silent_indices(scalars[3:]))

    def step(self, x_pos: Tensor, x_neg: Tensor, steps: int = 1) -> StepResult:
        """
        Run `steps` optimisation steps on one batch.

        Returns the loss and mean goodness of the last step's forward pass (taken before its
        update). The activities are that same forward's when steps == 1, so a pipelined
        minibatch step costs exactly one forward pass. With many steps on one batch (the
        full-batch recipe) they come from the final weights instead: that is what the layer
        will pass on at inference, so the next layer must train on it.
        """
        if steps < 1:
            raise ValueError(f'steps must be >= 1, got {steps}')
        if self.class_groups:
            raise ValueError('a class_groups layer trains on labelled batches (step_classes), '
                             'not on positives and negatives')
        if x_pos.shape[1:] != x_neg.shape[1:]:
            raise ValueError('positive and negative samples differ in shape: '
                             f'{tuple(x_pos.shape)} vs {tuple(x_neg.shape)}')
        n_pos = x_pos.shape[0]
        # One forward over both halves; valid because layers treat samples independently.
        x = torch.cat([x_pos.to(self.device), x_neg.to(self.device)])
        self.layer.train()
        self._schedule_lr()
        if supports_fused(self.layer, self.hparams):
            loss, g_pos, g_neg, h = self._fused_steps(self.layer.prepare_input(x), n_pos, steps)
        else:
            loss, g_pos, g_neg, h = self._autograd_steps(x, n_pos, steps)
        h_pos, h_neg = h[:n_pos], h[n_pos:]
        self.batches_seen += 1
        self.steps_seen += steps
        # One device sync for all three scalars.
        scalars = torch.stack([loss.detach(), g_pos.detach().mean(), g_neg.detach().mean()]).cpu()
        return StepResult(loss=float(scalars[0]), goodness_pos=float(scalars[1]),
                          goodness_neg=float(scalars[2]), h_pos=h_pos.detach(),
                          h_neg=h_neg.detach())

    def _schedule_lr(self) -> None:
        """Set this batch's learning rate (hparams.lr_at): the count lives in checkpoints."""
        lr = self.hparams.lr_at(self.batches_seen)
        for group in self.optimizer.param_groups:
            group['lr'] = lr

    def _fused_steps(self, x: Tensor, n_pos: int, steps: int) -> tuple[Tensor, ...]:
        for _ in range(steps):  # the fused pass overwrites .grad, so no zero_grad
            loss, g_pos, g_neg, h = fused_forward_backward(
                self.layer, x, n_pos, self.hparams, keep_activities=steps == 1)
            self.optimizer.step()
        if steps > 1:
            with torch.no_grad():
                h = self.layer.forward_prepared(x)
        return loss, g_pos, g_neg, h

    def _autograd_steps(self, x: Tensor, n_pos: int, steps: int) -> tuple[Tensor, ...]:
        def objective(h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
            g_pos = self.training_goodness(h[:n_pos])
            g_neg = self.training_goodness(h[n_pos:])
            loss = ff_loss(g_pos.flatten(), g_neg.flatten(), self.hparams.threshold,
                           self.hparams.loss, self.hparams.symba_alpha)
            return loss, g_pos, g_neg

        return self._optimise(x, steps, objective)

    def _optimise(self, x: Tensor, steps: int,
                  objective: Callable[[Tensor], tuple[Tensor, ...]]) -> tuple[Tensor, ...]:
        """
        Run `steps` autograd steps of objective(activities) -> (loss, *goodness).

        Return the last step's loss and goodness, then the activities: that forward's with
        one step, the final weights' with several (what the layer passes on at inference).
        """
        forward = self.layer
        if steps > 1 and hasattr(self.layer, 'prepare_input'):
            x = self.layer.prepare_input(x)  # parameter-free: paid once for all steps
            forward = self.layer.forward_prepared
        for _ in range(steps):
            h = forward(x)
            loss, *goodness = objective(h)
            self.optimizer.zero_grad(set_to_none=True)
            (loss + self._peer_loss(h) if self.hparams.peer_norm else loss).backward()
            self.optimizer.step()
        if steps > 1:
            with torch.no_grad():
                h = forward(x)
        return (loss, *goodness, h)

    def _peer_loss(self, h: Tensor) -> Tensor:
        """
        Return peer normalisation's loss (Hinton 2022, section 3.3; weight peer_norm).

        Each unit's (conv: channel's) running mean activity, updated with this batch's mean
        and momentum PEER_MOMENTUM, is drawn to the mean over the layer's units. A unit that
        went silent has a running mean below that, so its loss pushes it back up, which
        reaches its weights through ReLU when relu_grad is full.
        """
        dims = [0, *range(2, h.dim())]
        batch_mean = h.mean(dim=dims)
        previous = (batch_mean.detach() if self.peer_means is None
                    else self.peer_means.to(h.device))
        running = PEER_MOMENTUM * previous + (1.0 - PEER_MOMENTUM) * batch_mean
        self.peer_means = running.detach()
        return self.hparams.peer_norm * (running.mean().detach() - running).pow(2).mean()

    @torch.no_grad()
    def infer(self, x: Tensor) -> Tensor:
        """Return the layer's activities for x, on this trainer's device, without gradients."""
        self.layer.eval()
        return self.layer(x.to(self.device))

    def goodness_of(self, h: Tensor) -> Tensor:
        """
        Return per-sample goodness with this layer's reduction (mean or sum).

        (B,), or (B, groups) for a class_groups layer (each group's goodness: a class logit).
        """
        if self.class_groups:
            return group_goodness(h, self.class_groups, self.hparams.goodness)
        return goodness(h, self.hparams.goodness)

    def training_goodness(self, h: Tensor) -> Tensor:
        """
        Return the goodness the loss sees: per sample (B,), or per position (B, H*W).

        With goodness_scope 'position' a conv layer must tell positive from negative at
        every position of its map, not only on average over it.
        """
        if self.hparams.goodness_scope == 'position' and h.dim() == 4:
            return position_goodness(h, self.hparams.goodness)
        return goodness(h, self.hparams.goodness)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: weights, optimizer state, counters (weights_only-safe)."""
        state = {
            'layer': self.layer.state_dict(),
            'optimizer': self.optimizer.state_dict(),
            'optimizer_name': self.hparams.optimizer,
            'hparams': self.hparams.to_dict(),
            'batches_seen': self.batches_seen,
            'steps_seen': self.steps_seen,
        }
        if self.peer_means is not None:
            state['peer_means'] = self.peer_means.cpu()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        missing = [key for key in _STATE_KEYS if key not in state]
        if missing:
            raise ValueError(f'trainer state lacks {", ".join(missing)}')
        if state['optimizer_name'] != self.hparams.optimizer:
            raise ValueError(f'trainer state holds a {state["optimizer_name"]!r} optimizer, '
                             f'but this layer is configured for {self.hparams.optimizer!r}')
        try:
            self.layer.load_state_dict(state['layer'])
        except RuntimeError as error:  # torch reports shape/key mismatches as RuntimeError
            raise ValueError(f'trainer state does not fit this layer: {error}') from error
        self.optimizer.load_state_dict(state['optimizer'])
        # The config, not the checkpoint, decides the hyperparameters of the resumed run.
        self.batches_seen = int(state['batches_seen'])
        for group in self.optimizer.param_groups:
            group['lr'] = self.hparams.lr_at(self.batches_seen)
            group['weight_decay'] = self.hparams.weight_decay
        self.steps_seen = int(state['steps_seen'])
        means = state.get('peer_means')
        self.peer_means = None if means is None else means.to(self.device)
