"""
launch_ros actions for a deployment, for `ros2 launch`.

Built from `Deployment.processes()`, the description `dff_launch` runs too: one
Node action per server container, then the master, each with its node name in
the /dff namespace and [deployment file, overrides] as parameters (the same
command lines as dff_launch's). When the master exits the launch shuts down,
so the servers get SIGINT after the master is gone and save the weights of any
layer they still host. The master waits for its servers by itself
(`discovery_timeout_s`), so all processes can start at once.

Relative weight_dir / out_dir are taken from the folder `ros2 launch` was started
in, as under dff_launch (`Deployment.base`); the first log lines say where.

Needs the `launch` and `launch_ros` packages: a ROS 2 install, or
scripts/install_ros2_tools.sh from the upstream sources.
"""
from __future__ import annotations

from typing import Mapping, Optional

from dff_lifecycle.deploy.deployment import Deployment, PACKAGE, ProcessSpec
from launch.actions import EmitEvent, LogInfo, RegisterEventHandler
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown
from launch_ros.actions import Node


RESPAWN_DELAY_S = 1.0


def process_node(spec: ProcessSpec, output: str = 'screen',
                 additional_env: Optional[Mapping[str, str]] = None) -> Node:
    # Servers respawn, as dff_launch does: the master moves a dead server's layers and
    # the respawned container is there for the next loss (or a one-server deployment).
    return Node(package=PACKAGE, executable=spec.executable, name=spec.name,
                namespace=spec.namespace, parameters=[str(spec.params_file), dict(spec.overrides)],
                output=output, emulate_tty=True, additional_env=dict(additional_env or {}),
                respawn=spec.respawn, respawn_delay=RESPAWN_DELAY_S)


def deployment_nodes(deployment: Deployment, output: str = 'screen',
                     additional_env: Optional[Mapping[str, str]] = None
                     ) -> tuple[list[Node], Node]:
    """(server container Node actions, master Node action)."""
    nodes = [process_node(spec, output, additional_env) for spec in deployment.processes()]
    return nodes[:-1], nodes[-1]


def shutdown_after(master: Node) -> RegisterEventHandler:
    """End the launch when the master exits: the servers are stopped after it."""
    return RegisterEventHandler(OnProcessExit(target_action=master, on_exit=[
        LogInfo(msg='master finished: stopping the server containers'),
        EmitEvent(event=Shutdown(reason='master finished'))]))


def deployment_actions(deployment: Deployment, output: str = 'screen',
                       additional_env: Optional[Mapping[str, str]] = None) -> list:
    servers, master = deployment_nodes(deployment, output, additional_env)
    lines = [deployment.describe(), *deployment.describe_directories('ros2 launch')]
    return [*(LogInfo(msg=line) for line in lines), *servers, master, shutdown_after(master)]
