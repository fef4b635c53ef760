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
    serve     stay up and offer the /dff/train action (dff_msgs/action/Train):
              each goal is a `run` of its configs, one goal at a time; SIGINT or
              SIGTERM stop serving (a running goal is canceled first), a second
              one interrupts at once

The work is done by the parts in this package: the plan, the deployer, the
pipeline endpoints and watch, the streamer and its supervisor, distributed
training and inference, `core.evaluation`, one deployed run (`run.py`) for
every command that trains or evaluates, and the action (`train_action.py`).
"""
from __future__ import annotations

from pathlib import Path
import secrets
import signal
import sys
import time
from typing import Optional

from dff_lifecycle.common.cpu_limit import torch_threads, usable_cores
from dff_lifecycle.common.freeze import Freeze, FreezeDetector, FreezeWatch, Stops
from dff_lifecycle.common.liveness import HEARTBEAT_LEASE_S, PARTICIPANT_LEASE_S
from dff_lifecycle.common.names import MASTER_NAME, NAMESPACE
from dff_lifecycle.core.config import ConfigError, ModelConfig
from dff_lifecycle.core.data.datasets import DataNotFoundError, Dataset, load_model_data
from dff_lifecycle.core.data.image_folder import ImageFolderError
from dff_lifecycle.core.run.metrics import write_metrics
from dff_lifecycle.master.configs import load_run_model, RunRequest
from dff_lifecycle.master.deployer import Deployer, DeployerSettings
from dff_lifecycle.master.errors import PipelineError
from dff_lifecycle.master.lifecycle_manager import BringUpError, LifecycleManager
from dff_lifecycle.master.parameters import COMMANDS, MASTER_PARAMETERS, TRAIN_ACTION
from dff_lifecycle.master.plan import check_placement, DistributionPlan, parse_pins
from dff_lifecycle.master.run import DeployedRun, make_plan, RunControl, RunFailed, RunOutcome
from dff_lifecycle.master.train_action import run_goal, TrainActionServer
from dff_lifecycle.ros.node_args import check_node_args, NodeUsage
from dff_lifecycle.ros.parameters import declare_all, ParameterError, read_all
from dff_lifecycle.ros.process import ros_process
from dff_lifecycle.ros.service_calls import ClientCache, ServiceCallError
from rclpy.node import Node
import torch
from tqdm import tqdm

RUN_COMMANDS = ('run', 'train', 'evaluate')  # the commands that deploy and stream
GOAL_POLL_S = 0.2                            # serve: how often the main thread looks up


class MasterCoordinator(Node):
    """Reads the configs, then runs one command over the server containers."""

    def __init__(self, **kwargs) -> None:
        super().__init__(MASTER_NAME, namespace=NAMESPACE, **kwargs)
        declare_all(self, MASTER_PARAMETERS)
        self.settings = read_all(self, MASTER_PARAMETERS)
        self.run_id = secrets.token_hex(3)
        s = self.settings
        # torch's default spin-waits a core per thread beside the layers
        torch.set_num_threads(torch_threads(s['torch_threads']))
        self.deployer = Deployer(self, ClientCache(self), DeployerSettings(
            servers=s['servers'], service_timeout_s=s['service_timeout_s'],
            discovery_timeout_s=s['discovery_timeout_s'], parallel=s['parallel_bringup']),
            log=self.log)
        self._dataset: Optional[tuple[tuple, Dataset]] = None  # the last one loaded, by key
        self.stops = Stops()  # when this process last resumed from a stop (common/freeze.py)

    def frozen(self, freeze: Freeze) -> None:
        """
        Take a stop of this process (SIGSTOP, a debugger, a paused VM): common/freeze.py.

        No server was heard meanwhile, so their silence counts from now (heartbeats.py); the
        operator is told, and warned when the stop outlasted the master's participant lease.
        """
        self.stops.record(time.monotonic())
        if freeze.gap_s < PARTICIPANT_LEASE_S - 0.5:
            self.log(f"the master was {freeze.text()}: the servers' silence counts from now")
            return
        self.log(f'warning: the master was {freeze.text()}, past the DDS participant lease '
                 f'({PARTICIPANT_LEASE_S:.0f} s): the server containers have dropped it from '
                 'their graph, and a participant that returns is rediscovered from one side '
                 'only (tens of seconds, or not at all); servers that stay silent now are cut '
                 'off from it, not dead')

    def log(self, text: str) -> None:
        with tqdm.external_write_mode():
            print(text, flush=True)

    def progress(self, total: int, desc: str) -> tqdm:
        # Redrawn in place on a terminal; through a pipe (launchers, logs) a line every 10 s.
        interactive = sys.stderr.isatty()
        return tqdm(total=total, unit='batch', desc=desc, disable=not self.settings['progress'],
                    mininterval=0.1 if interactive else 10.0)

    # ------------------------------------------------------------- configuration
    def parameter_request(self) -> RunRequest:
        s = self.settings
        return RunRequest(s['model_config'], s['layer_config'], epochs=s['epochs'])

    def load_model(self, request: RunRequest) -> ModelConfig:
        """Both configs and every setting that needs no server, checked before any call."""
        s = self.settings
        model = load_run_model(request)
        check_placement(len(model.stages), s['placement'], self.pins())
        return model

    def pins(self) -> dict[int, str]:
        return parse_pins([p for p in self.settings['pins'] if p])

    def load_data(self, model: ModelConfig) -> Dataset:
        """Return the model's dataset; the last one is kept for the next goal that wants it."""
        s, t = self.settings, model.training
        folder = model.image_folder
        key = (model.dataset, folder and folder.root, t.train_limit, t.test_limit)
        if self._dataset is None or self._dataset[0] != key:
            self._dataset = None  # free the old one first
            self._dataset = (key, load_model_data(model, s['data_root'] or None,
                                                  download=s['download'],
                                                  progress=s['progress']))
        return self._dataset[1]

    def discover(self) -> list[str]:
        try:
            servers = self.deployer.discover_servers()
        except PipelineError as exc:
            raise RunFailed('servers', str(exc)) from exc
        self.log(f'servers: {", ".join(servers)}')
        return servers

    # ------------------------------------------------------------------ commands
    def execute(self) -> int:
        s = self.settings
        command = s['command']
        if command not in COMMANDS:
            raise ConfigError('parameters', 'command',
                              f'unknown command {command!r} (known: {", ".join(COMMANDS)})')
        model = self.load_model(self.parameter_request())  # serve too: fail at start, not later
        if command == 'serve':
            return self.serve()
        if command in (*RUN_COMMANDS, 'bringup'):  # bringup: deploy, stream nothing
            outcome = self.run_model(command, model, out_dir=s['out_dir'])
            if command in ('run', 'evaluate'):
                print(f'test accuracy: {outcome.test_accuracy:.4f}', flush=True)
            return 0
        servers = self.discover()
        if command == 'delete':
            self.deployer.delete_model(model.name, servers)
            return 0
        if command == 'save':
            for f in self.deployer.save_model(model.name, servers):
                self.log(f'saved {f}')
            return 0
        plan = make_plan(model, servers, s, self.log)
        self.log(f'distribution plan for {model.name} ({s["placement"]}):\n{plan.table()}')
        if command == 'plan':
            return 0
        return self.reset(plan)  # reset

    def run_model(self, command: str, model: ModelConfig, control: RunControl = RunControl(),
                  out_dir: str = '', run_id: str = '') -> RunOutcome:
        """Deploy, train and/or evaluate as `command` says; the metrics go to out_dir."""
        dataset = self.load_data(model) if command in RUN_COMMANDS else None
        servers = self.discover()
        run = DeployedRun(self, self.deployer, self.settings, run_id or self.run_id, self.log,
                          self.progress, out_dir=Path(out_dir) if out_dir else None,
                          resumed_at=self.stops.resumed_at)
        outcome = run.execute(command, model, dataset, servers, control)
        if out_dir:
            write_metrics(outcome.metrics, Path(out_dir))
        return outcome

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

    def serve(self) -> int:
        """Offer the train action until SIGINT / SIGTERM; goals run here, one at a time."""
        defaults = self.parameter_request()
        server = TrainActionServer(self, log=self.log)
        stopping = False

        def on_signal(_signum: int, _frame) -> None:
            nonlocal stopping  # only a flag: the main thread may be anywhere
            if stopping:
                raise KeyboardInterrupt
            stopping = True

        def is_stopping() -> bool:
            return stopping

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        self.log(f'serving {TRAIN_ACTION} (dff_msgs/action/Train), one goal at a time; '
                 f'default model {defaults.model_config}')
        try:
            while not stopping:
                job = server.next_goal(GOAL_POLL_S)
                if job is None:
                    continue
                run_id = secrets.token_hex(3)
                out_dir = ''
                if self.settings['out_dir']:
                    out_dir = str(Path(self.settings['out_dir']).resolve() / f'goal_{run_id}')

                def run(request: RunRequest, control: RunControl) -> RunOutcome:
                    return self.run_model('run', self.load_model(request), control, out_dir,
                                          run_id)
                server.wait_for_feedback_readers(job, is_stopping)
                server.finish(job, run_goal(job, run, defaults, is_stopping, self.log,
                                            out_dir))
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            server.close()
        self.log(f'stopped serving {TRAIN_ACTION}')
        return 0


def _interrupt(*_args) -> None:
    raise KeyboardInterrupt


USAGE = NodeUsage('master', 'The DFF master: read a model config, place its layers on server '
                  'containers, drive their lifecycles, train and evaluate through them, save '
                  '(command run, train or evaluate), or offer the /dff/train action (command '
                  'serve).', MASTER_PARAMETERS)


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv if argv is None else argv
    code = check_node_args(argv, USAGE)
    if code is not None:
        return code
    signal.signal(signal.SIGTERM, _interrupt)  # like Ctrl-C: tear down, then exit
    # Explicitly: a process started in the background of a script inherits SIGINT
    # ignored, and dff_launch stops the master with SIGINT.
    signal.signal(signal.SIGINT, _interrupt)
    try:
        with ros_process(argv) as ros:
            master = MasterCoordinator()
            ros.start(master)  # single-threaded: no callback of the master blocks
            # Any stop longer than the heartbeat lease: the servers were unheard meanwhile.
            watch = FreezeWatch(master.frozen, FreezeDetector(
                bound_s=HEARTBEAT_LEASE_S, cores=usable_cores()))
            code = master.execute()
            watch.stop()
            ros.done(code)
            return code
    except (ConfigError, DataNotFoundError, ImageFolderError, PipelineError, BringUpError,
            ServiceCallError, ParameterError, RunFailed) as exc:
        print(f'master: error: {exc}', file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        print('master: interrupted', file=sys.stderr, flush=True)
        return 130


if __name__ == '__main__':
    sys.exit(main())
