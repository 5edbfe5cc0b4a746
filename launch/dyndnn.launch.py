# SPDX-License-Identifier: Apache-2.0
"""Start the whole dyndnn system: DVFS node, hardware monitor, resource manager, inference node and
camera source (dyndnn_ros/system.py defines them, for this file and for `dyndnn up` alike).

    ros2 launch dyndnn_ros dyndnn.launch.py
    ros2 launch dyndnn_ros dyndnn.launch.py model_config:=ofa_mbv3_gpu backend:=tensorrt \
        device:=cuda:0
    ros2 launch dyndnn_ros dyndnn.launch.py sysfs_root:=/tmp/sim_jetson policy:=subnet_only
    ros2 launch dyndnn_ros dyndnn.launch.py params_file:=my_robot.yaml namespace:=robot1 \
        camera:=false

Every argument left empty keeps the value of `params_file`; an argument given wins over it.
"""
from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from dyndnn_ros import system

PACKAGE = "dyndnn_ros"
DEFAULT_PARAMS = Path(get_package_share_directory(PACKAGE)) / "config" / "dyndnn.yaml"


def start_nodes(context: LaunchContext):
    def value(name: str) -> str:
        return LaunchConfiguration(name).perform(context)

    parameter_file = system.load_parameter_file(Path(value("params_file")))
    overrides = {name: value(name) for name in system.ARGUMENT_NAMES}
    namespace = value("namespace")
    with_camera = value("camera").lower() in ("true", "1", "yes")
    nodes = []
    for name in system.NODES:
        if name == "camera_node" and not with_camera:
            continue
        parameters = system.node_parameters(parameter_file, name, overrides, namespace)
        nodes.append(Node(package=PACKAGE, executable=name, name=name, namespace=namespace,
                          parameters=[parameters], output="screen"))
    return nodes


def generate_launch_description() -> LaunchDescription:
    package_defaults = system.load_parameter_file(DEFAULT_PARAMS)
    arguments = [
        DeclareLaunchArgument("params_file", default_value=str(DEFAULT_PARAMS),
                              description="ROS 2 parameter file of every node"),
        DeclareLaunchArgument("namespace", default_value="",
                              description="namespace of every node and of the dyndnn topics"),
        DeclareLaunchArgument("camera", default_value="true",
                              description="start the camera source; false: your driver publishes "
                                          "image_raw"),
    ]
    for argument in system.ARGUMENTS:
        shipped = system.default_of(package_defaults, argument)
        arguments.append(DeclareLaunchArgument(
            argument.name, default_value="",
            description=f"{argument.description} (empty: from params_file; shipped: {shipped!r})"))
    return LaunchDescription(arguments + [OpaqueFunction(function=start_nodes)])
