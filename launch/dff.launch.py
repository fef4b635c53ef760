"""Start a DFF deployment: its server containers, then the master.

    ros2 launch dff_lifecycle dff.launch.py                          # mnist_2servers
    ros2 launch dff_lifecycle dff.launch.py deployment:=cifar10_3servers
    ros2 launch dff_lifecycle dff.launch.py deployment:=/path/mine.yaml servers:=3

`deployment` names a params/*.yaml of this package or is a path to a deployment
file; the processes come from dff_lifecycle.deploy.deployment, exactly as for
`dff_launch`. Relative weight_dir / out_dir in it are taken from the folder
`ros2 launch` is started in (the first log lines say where each one is). The
launch ends when the master exits.
"""
from dff_lifecycle.deploy.deployment import find_deployment, load_deployment
from dff_lifecycle.deploy.launch_description import deployment_actions
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration


def _deployment_actions(context):
    servers = int(LaunchConfiguration('servers').perform(context))
    path = find_deployment(LaunchConfiguration('deployment').perform(context))
    return deployment_actions(load_deployment(path, servers=servers or None))


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument('deployment', default_value='mnist_2servers',
                              description='shipped deployment name (params/<name>.yaml) or path'),
        DeclareLaunchArgument('servers', default_value='0',
                              description='number of server containers; 0: as in the deployment'),
        OpaqueFunction(function=_deployment_actions),
    ])
