"""
Master coordinator node: its parameters and its commands, nothing else.

    run       deploy, train, save, evaluate, tear down
    train     deploy, train, save, tear down
    evaluate  deploy (layers reload their weights), evaluate, tear down
    plan      print the distribution plan
    bringup   deploy and bring up (with teardown:=false the layers stay active)
    reset     nav2's RESET: deactivate and clean up every layer of the model, in
              reverse order (weights saved); the layers stay hosted, unconfigured
    save      every server saves the model's layers
    delete    every server removes the model's layers (weights saved)

The work is done by the parts in this package: the plan, the deployer, the
pipeline endpoints and watch, the streamer and its supervisor, distributed
training and inference, and `core.evaluation`.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
import secrets
import signal
import sys
import time
from typing import Optional

from dff_lifecycle.common.names import MASTER_NAME, NAMESPACE
from dff_lifecycle.common.package_files import resolve_config_path
from dff_lifecycle.core.config import (ConfigError, load_layer_config, load_model_config,
                                       ModelConfig)
from dff_lifecycle.core.data import DataNotFoundError, Dataset, load_dataset
from dff_lifecycle.core.evaluation import evaluate
from dff_lifecycle.core.metrics import write_metrics
from dff_lifecycle.master.checkpoints import CheckpointKeeper
from dff_lifecycle.master.deployer import Deployer, DeployerSettings
from dff_lifecycle.master.errors import PipelineError
from dff_lifecycle.master.inference import DistributedInference
from dff_lifecycle.master.lifecycle_manager import BringUpError, LifecycleManager
from dff_lifecycle.master.parameters import COMMANDS, MASTER_PARAMETERS
from dff_lifecycle.master.pipeline_io import PipelineIO
from dff_lifecycle.master.plan import build_plan, check_placement, DistributionPlan, parse_pins
from dff_lifecycle.master.recovery import Recovery
from dff_lifecycle.master.streaming import Streamer, StreamSettings
from dff_lifecycle.master.supervisor import Supervisor
from dff_lifecycle.master.training import DistributedTraining
from dff_lifecycle.ros.parameters import declare_all, ParameterError, read_all
from dff_lifecycle.ros.process import ros_process
from dff_lifecycle.ros.service_calls import ClientCache, ServiceCallError
from rclpy.node import Node
from tqdm import tqdm


class MasterCoordinator(Node):
    """Reads the configs, then runs one command over the server containers."""

    def __init__(self, **kwargs) -> None:
        super().__init__(MASTER_NAME, namespace=NAMESPACE, **kwargs)
        declare_all(self, MASTER_PARAMETERS)
        self.settings = read_all(self, MASTER_PARAMETERS)
        self.run_id = secrets.token_hex(3)
        s = self.settings
        self.deployer = Deployer(self, ClientCache(self), DeployerSettings(
            servers=s['servers'], service_timeout_s=s['service_timeout_s'],
            discovery_timeout_s=s['discovery_timeout_s'], parallel=s['parallel_bringup']),
            log=self.log)

    def log(self, text: str) -> None:
        with tqdm.external_write_mode():
            print(text, flush=True)

    def progress(self, total: int, desc: str) -> tqdm:
        # Redrawn in place on a terminal; through a pipe (launchers, logs) a line every 10 s.
        interactive = sys.stderr.isatty()
        return tqdm(total=total, unit='batch', desc=desc, disable=not self.settings['progress'],
                    mininterval=0.1 if interactive else 10.0)

    # ------------------------------------------------------------- configuration
    def load_model(self) -> ModelConfig:
        """Both configs and every setting that needs no server, checked before any call."""
        s = self.settings
        if s['command'] not in COMMANDS:
            raise ConfigError('parameters', 'command',
                              f'unknown command {s["command"]!r} (known: {", ".join(COMMANDS)})')
        # Relative paths: from the current folder, else from the package (repo or share).
        model = load_model_config(resolve_config_path(s['model_config']),
                                  load_layer_config(resolve_config_path(s['layer_config'])))
        if s['epochs']:
            model = replace(model, training=replace(model.training, epochs=s['epochs']))
        check_placement(len(model.layers), s['placement'], self.pins())
        return model

    def pins(self) -> dict[int, str]:
        return parse_pins([p for p in self.settings['pins'] if p])

    def make_plan(self, model: ModelConfig, servers: list[str]) -> DistributionPlan:
        s = self.settings
        return build_plan(model, servers, s['placement'], self.pins(),
                          {'chunk_elements': s['chunk_elements'],
                           'save_every_batches': s['save_every_batches'],
                           'save_every_s': s['save_every_s'],
                           'load_weights': s['load_weights']})

    def streamer(self, model: ModelConfig, plan: DistributionPlan, io: PipelineIO,
                 recovery: Optional[Recovery] = None) -> Streamer:
        s, t = self.settings, model.training
        full_batch = t.mode == 'full_batch'
        # A full batch is one batch of N steps per layer: allow for it before resending.
        stall = s['batch_timeout_s'] * (max(1, t.steps_per_layer // 10) if full_batch else 1)
        # Completed batches kept for replay: as many as replay_mib holds (one wire tensor each).
        features = model.layers[0].in_features
        row = features + 2 if model.supervised else 2 * features
        batch_bytes = 4 * row * (t.batch_size if not full_batch else (t.train_limit or 60_000))
        replay = int(s['replay_mib'] * 2**20 // batch_bytes) if recovery is not None else 0
        settings = StreamSettings(window=1 if full_batch else s['window'], stall_limit_s=stall,
                                  pause_timeout_s=s['pause_timeout_s'],
                                  max_resends=s['max_resends'], replay=replay)
        supervisor = Supervisor(plan.placements, self.deployer.present_nodes,
                                heartbeats=io.heartbeats if s['heartbeats'] else None,
                                layer_states=io.watch.not_active, recovery=recovery)
        return Streamer(settings, io.watch, {p.layer.index: p.full_name for p in plan.placements},
                        log=self.log, health_check=supervisor.check)

    # ------------------------------------------------------------------ commands
    def execute(self) -> int:
        s = self.settings
        model = self.load_model()
        command = s['command']
        dataset = None
        if command in ('run', 'train', 'evaluate'):
            t = model.training
            dataset = load_dataset(model.dataset, s['data_root'] or None, download=s['download'],
                                   train_limit=t.train_limit, test_limit=t.test_limit,
                                   progress=s['progress'])
        servers = self.deployer.discover_servers()
        self.log(f'servers: {", ".join(servers)}')
        if command == 'delete':
            self.deployer.delete_model(model.name, servers)
            return 0
        if command == 'save':
            for f in self.deployer.save_model(model.name, servers):
                self.log(f'saved {f}')
            return 0
        plan = self.make_plan(model, servers)
        self.log(f'distribution plan for {model.name} ({s["placement"]}):\n{plan.table()}')
        if command == 'plan':
            return 0
        if command == 'reset':
            return self.reset(plan)
        metrics = self.run_deployed(command, model, plan, servers, dataset)
        if s['out_dir']:
            write_metrics(metrics, Path(s['out_dir']))
        return 0

    def reset(self, plan: DistributionPlan) -> int:
        """Every present layer of the plan back to unconfigured, last layer first."""
        present = self.deployer.present_nodes()
        names = [p.full_name for p in plan.placements]
        manager = LifecycleManager(self.deployer.lifecycle, names, log=self.log)
        problems = manager.shutdown(skip={n for n in names if n not in present})
        if problems:
            self.log('reset problems: ' + '; '.join(problems))
            return 2
        return 0

    def run_deployed(self, command: str, model: ModelConfig, plan: DistributionPlan,
                     servers: list[str], dataset: Dataset) -> dict:
        """Deploy, train and/or evaluate, tear down; the run's metrics."""
        s = self.settings
        io = PipelineIO(self, plan, s['chunk_elements'], servers)
        manager = self.deployer.deploy(plan, servers, io)
        recovery, keeper = self.recovery(plan, servers, io)
        streamer = self.streamer(model, plan, io, recovery)
        inference = DistributedInference(model, plan, io, streamer, self.run_id, self.progress)
        metrics: dict = {'model': model.name, 'dataset': model.dataset, 'system': 'DFF',
                         'servers': servers, 'placement': s['placement'],
                         'plan': [{'layer': p.layer.index, 'server': p.server,
                                   'node': p.full_name} for p in plan.placements],
                         'bring_up_seconds': self.deployer.bring_up_seconds}
        if keeper is not None:
            keeper.start()
        try:
            if command in ('run', 'train'):
                training = DistributedTraining(model, plan, io, streamer, inference,
                                               self.run_id, self.progress, self.log)
                history, seconds = training.run(dataset)
                metrics.update(history=history, history_axis='step'
                               if model.training.mode == 'full_batch' else 'epoch',
                               train_seconds=seconds)
                self.log(f'training done in {seconds:.1f} s')
                if keeper is not None:
                    keeper.stop()
                live = recovery.live_servers() if recovery is not None else servers
                for f in self.deployer.save_model(model.name, live):
                    self.log(f'saved {f}')
            if command in ('run', 'evaluate'):
                started = time.perf_counter()
                evaluation = evaluate(model, dataset, label_scores_fn=inference.label_scores,
                                      features_fn=inference.features, device=s['device'])
                metrics.update(evaluation.to_dict(), eval_seconds=time.perf_counter() - started)
                self.log(f'{model.name} (DFF): test accuracy {evaluation.test_accuracy:.4f}, '
                         f'train accuracy {evaluation.train_accuracy:.4f}')
                print(f'test accuracy: {evaluation.test_accuracy:.4f}', flush=True)
        finally:
            if keeper is not None:
                keeper.stop()
            lost = set(io.heartbeats.lost())
            if recovery is not None:
                plan, lost = recovery.plan, lost | recovery.lost
                metrics.update(plan=[{'layer': p.layer.index, 'server': p.server,
                                      'node': p.full_name} for p in plan.placements],
                               recoveries=recovery.events)
            loaded = io.watch.weights_loaded()
            for entry in metrics['plan']:
                entry['weights_loaded'] = loaded[entry['layer']]
            if s['teardown']:
                self.deployer.teardown(manager, plan, servers, io, lost=frozenset(lost))
        return metrics

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
                            timeout_s=s['recovery_timeout_s'], on_replan=replanned, log=self.log)
        return recovery, keeper


def _interrupt(*_args) -> None:
    raise KeyboardInterrupt


def main(argv: Optional[list[str]] = None) -> int:
    signal.signal(signal.SIGTERM, _interrupt)  # like Ctrl-C: tear down, then exit
    # Explicitly: a process started in the background of a script inherits SIGINT
    # ignored, and dff_launch stops the master with SIGINT.
    signal.signal(signal.SIGINT, _interrupt)
    try:
        with ros_process(sys.argv if argv is None else argv) as ros:
            master = MasterCoordinator()
            ros.start(master)  # single-threaded: no callback of the master blocks
            return master.execute()
    except (ConfigError, DataNotFoundError, PipelineError, BringUpError, ServiceCallError,
            ParameterError) as exc:
        print(f'master: error: {exc}', file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        print('master: interrupted', file=sys.stderr, flush=True)
        return 130


if __name__ == '__main__':
    sys.exit(main())
