"""Serve a trained model on a camera topic: dff_infer, and optionally a camera stand-in.

    ros2 launch dff_lifecycle serve.launch.py                         # params/serve_mnist.yaml
    ros2 launch dff_lifecycle serve.launch.py params_file:=/path/mine.yaml camera:=true
    ros2 launch dff_lifecycle serve.launch.py image:=/camera/image_raw

dff_infer is a lifecycle node: with `autostart: true` in the parameter file it
configures and activates itself; otherwise `ros2 lifecycle set /dff_infer configure`
(then activate). `camera:=true` also starts dff_image_publisher playing the parameter
file's source onto the same topic. `image` remaps the topic both use.
"""
from dff_lifecycle.common.package_files import resolve_config_path
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node


def _nodes(context):
    params = resolve_config_path(LaunchConfiguration('params_file').perform(context))
    image = LaunchConfiguration('image').perform(context)
    remap = [('image', image)]
    return [
        LifecycleNode(package='dff_lifecycle', executable='dff_infer', name='dff_infer',
                      namespace='', output='screen', parameters=[params], remappings=remap),
        Node(package='dff_lifecycle', executable='dff_image_publisher',
             name='dff_image_publisher', output='screen', parameters=[params],
             remappings=remap, condition=IfCondition(LaunchConfiguration('camera'))),
    ]


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument('params_file', default_value='params/serve_mnist.yaml',
                              description='parameters of dff_infer and dff_image_publisher'),
        DeclareLaunchArgument('camera', default_value='false',
                              description='also start dff_image_publisher (a camera stand-in)'),
        DeclareLaunchArgument('image', default_value='image',
                              description='the image topic both nodes use'),
        OpaqueFunction(function=_nodes),
    ])
