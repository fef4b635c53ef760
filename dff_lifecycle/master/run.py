"""
One deployed run: plan, deploy, train and/or evaluate, save, and tear down.

The one-shot commands (`run`, `train`, `evaluate`) and every goal of the `train`
action go through `DeployedRun.execute`, so both have one training loop, one
save and one teardown. A `RunControl` carries what only the action uses: a
cancel flag, looked at before each batch goes out, and a progress hook.

A canceled run stops streaming (the batches in flight finish), saves every
layer on its server, deactivates the layers in reverse order and leaves them
hosted and configured (`inactive`). A failure raises `RunFailed` with the stage
it happened in, which the action turns into its error code.
"""
from __future__ import annotations

from dataclasses import dataclass, field
import math
from pathlib import Path
import time
from typing import Callable, Optional

from dff_lifecycle.common.memory_limit import mib
from dff_lifecycle.core.config import ConfigError, ModelConfig
from dff_lifecycle.core.data.datasets import Dataset
from dff_lifecycle.core.ff.sharding import SPLITTABLE
from dff_lifecycle.core.objectives.separation import inseparable_layers, silent_group_layers
from dff_lifecycle.core.run.evaluation import evaluate
from dff_lifecycle.core.run.learning_curve import LearningCurve
from dff_lifecycle.core.stage.batches import count_batches
from dff_lifecycle.core.stage.stage_costs import measure_stage_costs
from dff_lifecycle.master.bundling import BundleSettings, BundleSizer
from dff_lifecycle.master.checkpoints import CheckpointKeeper
from dff_lifecycle.master.deployer import Deployer
from dff_lifecycle.master.errors import PipelineError
from dff_lifecycle.master.inference import DistributedInference, Progress
from dff_lifecycle.master.lifecycle_manager import BringUpError, LifecycleManager
from dff_lifecycle.master.pipeline_io import PipelineIO
from dff_lifecycle.master.plan import (build_plan, DistributionPlan, NoRoom, parse_pins,
                                       parse_replicas, parse_shards, placement_bytes)
from dff_lifecycle.master.recovery import Recovery
from dff_lifecycle.master.streaming import Streamer, StreamSettings
from dff_lifecycle.master.supervisor import Supervisor
from dff_lifecycle.master.training import DistributedTraining, ProgressHook
from dff_lifecycle.ros.lifecycle_client import LifecycleError
from dff_lifecycle.ros.service_calls import ServiceCallError
from rclpy.node import Node

Log = Callable[[str], None]
# Where a run can fail; the action's error code follows from it (train_action.py).
STAGES = ('servers', 'deploy', 'training', 'saving', 'evaluation')
FAILURES = (PipelineError, BringUpError, ServiceCallError, LifecycleError)


def holders(plan: DistributionPlan, live: list[str]) -> list[str]:
    """
    Return the live servers that hold layers of `plan`: those whose layers the run saves.

    A server judged lost whose layers were moved holds none once it returns: its stale
    copies are deleted unsaved (fenced), and where that call cannot reach it (a returned
    participant whose services DDS has not matched again, seen under heavy load) saving
    there would only wait for it and write stale weights.
    """
    holding = plan.by_server()
    return [server for server in live if server in holding]


class RunFailed(RuntimeError):
    """A run stopped in `stage` (one of STAGES); the message is one line."""

    def __init__(self, stage: str, message: str) -> None:
        super().__init__(message)
        self.stage = stage


def _never() -> bool:
    return False


@dataclass(frozen=True)
class RunControl:
    cancelled: Callable[[], bool] = _never
    on_progress: Optional[ProgressHook] = None


@dataclass
class RunOutcome:
    metrics: dict
    test_accuracy: float = math.nan   # NaN: not evaluated
    train_seconds: float = 0.0
    epochs_done: int = 0
    weight_files: list[str] = field(default_factory=list)  # "<server>:<path>"
    canceled: bool = False


def make_plan(model: ModelConfig, servers: list[str], settings: dict,
              log: Log = print, train_batches: int = 0) -> DistributionPlan:
    """Return the run's plan; `train_batches`: the training stream's length (for replicas)."""
    s = settings
    costs = stage_costs(model, s, log) if s['placement'] == 'balanced' else None
    return build_plan(model, servers, s['placement'], parse_pins([p for p in s['pins'] if p]),
                      {'chunk_elements': s['chunk_elements'],
                       'save_every_batches': s['save_every_batches'],
                       'save_every_s': s['save_every_s'],
                       'load_weights': s['load_weights']}, costs,
                      parse_shards([p for p in s.get('shards', ['']) if p.strip()]),
                      parse_replicas([p for p in s.get('replicas', ['']) if p.strip()]),
                      s.get('sync_every', 0), train_batches)


def stage_costs(model: ModelConfig, settings: dict, log: Log = print) -> list[float]:
    """Return the `stage_costs` parameter as seconds, or each stage measured here (logged)."""
    given = [text for text in settings.get('stage_costs', ['']) if text.strip()]
    if given:
        try:
            costs = [float(text) for text in given]
        except ValueError:
            raise ConfigError('parameters', 'stage_costs', f'must be numbers of seconds, got '
                              f'{given}') from None
        if any(not math.isfinite(c) or c < 0 for c in costs):
            raise ConfigError('parameters', 'stage_costs', f'must be finite and >= 0, got '
                              f'{given}')
        return costs
    started = time.perf_counter()
    costs = measure_stage_costs(model)
    log(f'stage costs measured here in {time.perf_counter() - started:.1f} s (ms per batch): '
        + ', '.join(f'{stage.index}: {c * 1e3:.1f}' for stage, c in zip(model.stages, costs)))
    return costs


#: Largest bundle `bundle:=0` (sized from the pace) makes.
AUTO_BUNDLE_MAX = 64


def largest_batch_bytes(model: ModelConfig) -> int:
    """Wire bytes of one training batch on its widest hop (the model input or a stage's)."""
    t = model.training
    label = 1 if model.class_groups else 0
    rows = t.batch_size * (1 if model.class_groups else 2)
    widest = max([model.layers[0].in_features + 2]
                 + [math.prod(model.layers[stage.output_row].out_shape) + label
                    for stage in model.stages])
    return 4 * rows * widest


def bundle_setting(plan: DistributionPlan, settings: dict) -> int:
    """Return the `bundle` parameter, or 1 where shards or replicas take batch by batch."""
    if any(p.shards > 1 or p.replicas > 1 for p in plan.placements):
        return 1
    return settings['bundle']


def bundle_sizer(model: ModelConfig, bundle: int) -> Optional[BundleSizer]:
    """Return the run's bundle sizer (`bundle` parameter); None: each batch alone."""
    if bundle == 1 or model.training.mode == 'full_batch':
        return None
    settings = BundleSettings(max_batches=bundle or AUTO_BUNDLE_MAX, adaptive=bundle == 0)
    return BundleSizer(settings, largest_batch_bytes(model))


def _placements(plan: DistributionPlan) -> list[dict]:
    return [{'layer': p.layer.index, 'server': p.server, 'node': p.full_name,
             **({'shard': p.shard, 'shards': p.shards} if p.shards > 1 else {}),
             **({'replica': p.replica, 'replicas': p.replicas} if p.replicas > 1 else {})}
            for p in plan.placements]


def check_rooms(plan: DistributionPlan, rooms: dict[str, Optional[int]]) -> None:
    """
    Refuse a plan whose layers do not fit their servers' memory (NoRoom, one line).

    `rooms`: what each server may still allocate (None: unknown, not checked). Each layer
    node's configure checks this too, but only once its container holds the others: this
    refuses before anything starts, and names what one shard of a split layer needs.
    """
    for server, placements in plan.by_server().items():
        room = rooms.get(server)
        if room is None:
            continue
        needs = {p.full_name: placement_bytes(p) for p in placements}
        if sum(needs.values()) <= room:
            continue
        largest = max(placements, key=lambda p: needs[p.full_name])
        what = (f'shard {largest.shard + 1} of {largest.shards} of layer {largest.layer.index}'
                if largest.shards > 1 else f'layer {largest.layer.index}')
        hint = ('; split it across more devices (shards parameter, e.g. '
                f'"{largest.layer.index}:{largest.shards + 1}")' if largest.shards > 1 else
                f'; split it across devices (shards parameter, e.g. "{largest.layer.index}:2")'
                if largest.layer.module in SPLITTABLE else '')
        raise NoRoom(f'{server} has {mib(room)} free, and its layers need '
                     f'{mib(sum(needs.values()))}: {what} alone needs about '
                     f'{mib(needs[largest.full_name])} (weights, optimiser state, a batch)'
                     f'{hint}')


class DeployedRun:
    """Runs one command of one model over the server containers."""

    def __init__(self, node: Node, deployer: Deployer, settings: dict, run_id: str,
                 log: Log, progress: Progress, out_dir: Optional[Path] = None,
                 resumed_at: Callable[[], Optional[float]] = lambda: None) -> None:
        self.node = node
        self.resumed_at = resumed_at  # when the master last resumed from a stop
        self.out_dir = out_dir  # the run's metrics; a recovery that cannot fit keeps copies here
        self.deployer = deployer
        self.settings = settings
        self.run_id = run_id
        self.log = log
        self.progress = progress

    def streamer(self, model: ModelConfig, plan: DistributionPlan, io: PipelineIO,
                 recovery: Optional[Recovery] = None) -> Streamer:
        s, t = self.settings, model.training
        full_batch = t.mode == 'full_batch'
        # A full batch is one batch of N steps per layer: allow for it before resending.
        stall = s['batch_timeout_s'] * (max(1, t.steps_per_layer // 10) if full_batch else 1)
        # Completed batches kept for replay: as many as replay_mib holds (one wire tensor each).
        features = model.layers[0].in_features
        row = (features + 1 if model.class_groups else features + 2 if model.supervised
               else 2 * features)
        batch_bytes = 4 * row * (t.batch_size if not full_batch else (t.train_limit or 60_000))
        replay = int(s['replay_mib'] * 2**20 // batch_bytes) if recovery is not None else 0
        # Bundles of several batches: still one in flight per stage, and one more.
        min_items = 1 if full_batch or bundle_setting(plan, s) == 1 else len(plan.placements) + 1
        settings = StreamSettings(window=1 if full_batch else s['window'], stall_limit_s=stall,
                                  min_items=min_items,
                                  pause_timeout_s=s['pause_timeout_s'],
                                  max_resends=s['max_resends'], replay=replay,
                                  hang_limit_s=s['hang_timeout_s'])
        supervisor = Supervisor(plan.placements, self.deployer.present_nodes,
                                heartbeats=io.heartbeats if s['heartbeats'] else None,
                                layer_states=io.watch.not_active, recovery=recovery)
        return Streamer(settings, io.watch, {p.unit: p.full_name for p in plan.placements},
                        log=self.log, health_check=supervisor.check)

    def recovery(self, plan: DistributionPlan, servers: list[str], io: PipelineIO
                 ) -> tuple[Optional[Recovery], Optional[CheckpointKeeper]]:
        """Return the run's recovery and checkpoint keeper (None, None: recovery off)."""
        s = self.settings
        if not (s['recovery'] and s['heartbeats']):
            return None, None
        keeper = None
        recovery: Optional[Recovery] = None
        if s['checkpoint_pull_s'] > 0:
            keeper = CheckpointKeeper(
                plan.model, self.deployer.fetch_checkpoints,
                lambda: [x for x in recovery.live_servers() if x in io.heartbeats.alive()],
                s['checkpoint_pull_s'], log=self.log)

        def replanned(new_plan: DistributionPlan) -> None:
            io.plan = new_plan
        recovery = Recovery(plan, servers, self.deployer, io.heartbeats, io.watch, keeper,
                            timeout_s=s['recovery_timeout_s'], on_replan=replanned, log=self.log,
                            keep_dir=self.out_dir / 'checkpoints' if self.out_dir else None)
        return recovery, keeper

    def save(self, model: str, servers: list[str]) -> list[str]:
        """Every server saves the model's layers; "<server>:<path>" of each file."""
        files = []
        for server in servers:
            files += [f'{server}:{f}' for f in self.deployer.save_model(model, [server])]
        for f in files:
            self.log(f'saved {f}')
        return files

    # ---------------------------------------------------------------------- the run
    def execute(self, command: str, model: ModelConfig, dataset: Optional[Dataset],
                servers: list[str], control: RunControl = RunControl()) -> RunOutcome:
        """Deploy, train and/or evaluate (`command`: run, train, evaluate), then tear down."""
        s = self.settings
        train_batches = 0
        if dataset is not None and command in ('run', 'train'):  # a cosine rate's horizon
            train_batches = count_batches(dataset, model)
            model = model.with_schedule_horizon(train_batches)
        try:
            plan = make_plan(model, servers, s, self.log, train_batches)
        except ConfigError as exc:  # e.g. a layer pinned to a server that is not there
            raise RunFailed('servers', str(exc)) from exc
        self.log(f'distribution plan for {model.name} ({s["placement"]}):\n{plan.table()}')
        try:
            check_rooms(plan, {server: self.deployer.memory_room(server, s['service_timeout_s'])
                               for server in servers})
        except NoRoom as exc:
            raise RunFailed('deploy', str(exc)) from exc
        io = PipelineIO(self.node, plan, s['chunk_elements'], servers,
                        hang_s=s['hang_timeout_s'], resumed_at=self.resumed_at)
        try:
            manager = self.deployer.deploy(plan, servers, io)
        except FAILURES as exc:
            raise RunFailed('deploy', str(exc)) from exc
        recovery, keeper = self.recovery(plan, servers, io)
        streamer = self.streamer(model, plan, io, recovery)
        inference = DistributedInference(model, plan, io, streamer, self.run_id, self.progress)
        outcome = RunOutcome(metrics={
            'model': model.name, 'dataset': model.dataset, 'system': 'DFF',
            'servers': servers, 'placement': s['placement'], 'plan': _placements(plan),
            'bring_up_seconds': self.deployer.bring_up_seconds})
        if keeper is not None:
            keeper.start()
        try:
            if command in ('run', 'train'):
                self._train(model, plan, io, streamer, inference, dataset, control, outcome)
                if keeper is not None:
                    keeper.stop()
                if recovery is not None:  # a lost server back by now: fence it before
                    recovery.fence_returned()  # its stale layers share names with the moved
                live = recovery.live_servers() if recovery is not None else servers
                try:
                    outcome.weight_files = self.save(model.name, holders(io.plan, live))
                except FAILURES as exc:
                    raise RunFailed('saving', str(exc)) from exc
            if command in ('run', 'evaluate') and not outcome.canceled and control.cancelled():
                outcome.canceled = True
                self.log('canceled before evaluation')
            if command in ('run', 'evaluate') and not outcome.canceled:
                self._evaluate(model, dataset, inference, outcome)
        finally:
            if keeper is not None:
                keeper.stop()
            if recovery is not None:  # nor may a stale layer answer the teardown's calls
                recovery.fence_returned()
            plan, lost = self._record_recovery(plan, io, recovery, outcome.metrics)
            if outcome.canceled:
                self._pause(manager)
                io.close()
            elif s['teardown']:
                self.deployer.teardown(manager, plan, servers, io, lost=frozenset(lost))
        outcome.metrics['canceled'] = outcome.canceled
        return outcome

    def _train(self, model: ModelConfig, plan: DistributionPlan, io: PipelineIO,
               streamer: Streamer, inference: DistributedInference, dataset: Dataset,
               control: RunControl, outcome: RunOutcome) -> None:
        curve = (LearningCurve(model, dataset, inference.label_scores, self.out_dir, self.log)
                 if model.training.curve_every else None)
        training = DistributedTraining(model, plan, io, streamer, inference, self.run_id,
                                       self.progress, self.log, cancelled=control.cancelled,
                                       on_progress=control.on_progress,
                                       sizer=bundle_sizer(model, bundle_setting(plan,
                                                                                self.settings)),
                                       curve=curve)
        try:
            result = training.run(dataset)
        except FAILURES as exc:
            raise RunFailed('training', str(exc)) from exc
        outcome.train_seconds = result.seconds
        outcome.epochs_done = result.progress.epochs_done
        outcome.canceled = result.canceled
        outcome.metrics.update(history=result.history, history_axis='step'
                               if model.training.mode == 'full_batch' else 'epoch',
                               train_seconds=result.seconds,
                               batches_done=result.progress.done)
        if result.curve:
            outcome.metrics['curve'] = list(result.curve)
        sizes = sorted(result.bundle_sizes)
        if sizes:
            outcome.metrics['bundles'] = {'messages': len(sizes), 'median': sizes[len(sizes) // 2],
                                          'max': sizes[-1]}
        if not result.canceled:
            bundled = (f' ({sum(sizes)} batches in {len(sizes)} messages, median bundle '
                       f'{sizes[len(sizes) // 2]})' if sizes and sizes[-1] > 1 else '')
            self.log(f'training done in {result.seconds:.1f} s{bundled}')
        for warning in (inseparable_layers(result.history)
                        + silent_group_layers(result.history)):
            self.log(f'WARNING: {warning}')

    def _evaluate(self, model: ModelConfig, dataset: Dataset, inference: DistributedInference,
                  outcome: RunOutcome) -> None:
        started = time.perf_counter()
        try:
            evaluation = evaluate(model, dataset, label_scores_fn=inference.label_scores,
                                  features_fn=inference.features, device=self.settings['device'])
        except FAILURES as exc:
            raise RunFailed('evaluation', str(exc)) from exc
        outcome.test_accuracy = evaluation.test_accuracy
        outcome.metrics.update(evaluation.to_dict(), eval_seconds=time.perf_counter() - started)
        self.log(f'{model.name} (DFF): test accuracy {evaluation.test_accuracy:.4f}, '
                 f'{evaluation.train_text()}')

    def _record_recovery(self, plan: DistributionPlan, io: PipelineIO,
                         recovery: Optional[Recovery], metrics: dict
                         ) -> tuple[DistributionPlan, set[str]]:
        """Return the plan as it ends (layers may have moved) and the lost servers."""
        lost = set(io.heartbeats.lost())
        # The longest silence each server showed: what a fixed-lease rule would have judged.
        metrics['longest_silence_s'] = {s: round(t, 3)
                                        for s, t in io.heartbeats.longest_silences().items()}
        if recovery is not None:
            plan, lost = recovery.plan, lost | recovery.lost
            metrics.update(plan=_placements(plan), recoveries=recovery.events)
        loaded = io.watch.weights_loaded()
        units = {p.full_name: p.unit for p in plan.placements}
        for entry in metrics['plan']:
            entry['weights_loaded'] = loaded.get(units.get(entry['node'], entry['layer']), False)
        return plan, lost

    def _pause(self, manager: LifecycleManager) -> None:
        """Deactivate every active layer, last first; they stay configured (best effort)."""
        for node, state in reversed(list(manager.states().items())):
            if state != 'active':
                continue
            try:
                manager.client.transition(node, 'deactivate')
                self.log(f'  deactivate {node}: ok')
            except (LifecycleError, ServiceCallError) as exc:
                self.log(f'  deactivate {node}: {exc}')
