"""
Scores from the layer nodes on the devices: `dff_infer -p mode:=pipeline`.

Configure deploys the model's layers on the server containers the way the master
does (the same plan, `Deployer` and nav2-style bring-up), each layer loading its
trained weights from its own server's weight_dir; every image then travels through
them as an inference batch (`master.inference.DistributedInference`), and the
goodness comes back as in a distributed evaluation. Cleanup tears the layers down.

The ROS calls run on a node of their own context and executor, so configure may
be called from the serving node's lifecycle service (an executor callback)
without waiting on its own executor.
"""
from __future__ import annotations

from contextlib import ExitStack
import dataclasses
import itertools
import os
import threading
import time
from typing import Callable

from dff_lifecycle.core.config import ModelConfig
from dff_lifecycle.master.deployer import Deployer, DeployerSettings
from dff_lifecycle.master.errors import PipelineError
from dff_lifecycle.master.inference import DistributedInference
from dff_lifecycle.master.lifecycle_manager import BringUpError
from dff_lifecycle.master.parameters import MASTER_PARAMETERS
from dff_lifecycle.master.pipeline_io import PipelineIO
from dff_lifecycle.master.run import DeployedRun, FAILURES, make_plan
from dff_lifecycle.ros.process import ros_process
from dff_lifecycle.ros.service_calls import ClientCache
from rclpy.node import Node
from torch import Tensor
from tqdm import tqdm

Log = Callable[[str], None]
STATUS_WAIT_S = 10.0  # for every layer's first status after bring-up (weights loaded?)
TEARDOWN_CALL_S = 1.0  # each service call of the teardown at close
TEARDOWN_S = 3.0       # the whole teardown at close


class PipelineScorerError(ValueError):
    """The deployed pipeline cannot serve (no servers, a layer without trained weights)."""


def _quiet_progress(total: int, desc: str) -> tqdm:
    return tqdm(total=total, desc=desc, disable=True)


class PipelineScorer:
    """One deployment of the model for serving; `scores` streams a batch through it."""

    def __init__(self, stack: ExitStack, deployer: Deployer, manager, plan, servers, io,
                 inference: DistributedInference) -> None:
        self._stack, self.deployer, self.manager = stack, deployer, manager
        self.plan, self.servers, self.io, self.inference = plan, servers, io, inference
        self._tags = itertools.count()

    @classmethod
    def deploy(cls, model: ModelConfig, servers_wanted: int, name: str, log: Log,
               discovery_timeout_s: float = 60.0) -> 'PipelineScorer':
        """Deploy `model` on `servers_wanted` containers and bring it up; raise one line."""
        settings = {key: param.default for key, param in MASTER_PARAMETERS.items()}
        settings.update(servers=servers_wanted, discovery_timeout_s=discovery_timeout_s,
                        save_every_batches=0, save_every_s=0.0, load_weights=True,
                        recovery=False, checkpoint_pull_s=0.0, replay_mib=0.0)
        stack = ExitStack()
        try:
            ros = stack.enter_context(ros_process([], own_context=True))
            node = Node(f'{name}_pipeline', context=ros.context)
            # Single-threaded: rclpy's MultiThreadedExecutor delayed one image's results by
            # up to 1.8 s now and then (measured: 4 to 1834 ms per image), this one 4 to 7 ms.
            ros.start(node)
            deployer = Deployer(node, ClientCache(node), DeployerSettings(
                servers=servers_wanted, service_timeout_s=settings['service_timeout_s'],
                discovery_timeout_s=discovery_timeout_s), log=log)
            servers = deployer.discover_servers()[:servers_wanted]
            plan = make_plan(model, servers, settings)
            io = PipelineIO(node, plan, settings['chunk_elements'], servers)
            manager = deployer.deploy(plan, servers, io)
            scorer = cls(stack, deployer, manager, plan, servers, io, None)
            run = DeployedRun(node, deployer, settings, f'serve{os.getpid()}', log,
                              _quiet_progress)
            scorer.inference = DistributedInference(model, plan, io, run.streamer(model, plan, io),
                                                    f'serve{os.getpid()}', _quiet_progress)
            scorer._check_weights_loaded()
            log(f'pipeline: {len(plan.placements)} layer(s) up on {", ".join(servers)}')
            return scorer
        except FAILURES + (BringUpError, PipelineScorerError) as exc:
            if 'scorer' in locals():
                scorer.close()
            else:
                stack.close()
            raise PipelineScorerError(f'pipeline mode: {exc}') from None
        except BaseException:
            stack.close()
            raise

    def _check_weights_loaded(self) -> None:
        """Refuse to serve a layer that started from its initialisation (no saved weights)."""
        watch = self.io.watch
        deadline = time.monotonic() + STATUS_WAIT_S
        while time.monotonic() < deadline and not all(watch.weights_loaded().values()):
            watch.wait(0.1)
        missing = [p for p in self.plan.placements if not watch.weights_loaded()[p.unit]]
        if missing:
            listing = ', '.join(f'layer {p.layer.index} on {p.server}' for p in missing)
            raise PipelineScorerError(f"no trained weights for {listing} in its server's "
                                      f'weight_dir (<weight_dir>/{self.plan.model}/layer_<i>.pt)')

    def scores(self, x: Tensor) -> Tensor:
        return self.inference.label_scores(x, f'img{next(self._tags)}')

    def close(self) -> None:
        """
        Tear the layers down (best effort, bounded) and close the node's context.

        Under `ros2 launch` the servers get their SIGINT with this node's, so they may be
        shutting down or gone: every call gets TEARDOWN_CALL_S and the whole teardown
        TEARDOWN_S, inside launch's 5 s before it escalates to SIGTERM.
        """
        deployer = self.deployer
        deployer.settings = dataclasses.replace(deployer.settings,
                                                service_timeout_s=TEARDOWN_CALL_S)
        deployer.lifecycle.timeout_s = TEARDOWN_CALL_S

        def teardown() -> None:
            try:
                deployer.teardown(self.manager, self.plan, self.servers, self.io)
            except (PipelineError, *FAILURES):
                pass
        worker = threading.Thread(target=teardown, daemon=True)
        worker.start()
        worker.join(TEARDOWN_S)
        self._stack.close()
