"""Start the whole dyndnn system: camera source, inference node, resource manager, DVFS node and
hardware monitor, with parameters from config/dyndnn.yaml.

    ros2 launch dyndnn_ros dyndnn.launch.py
    ros2 launch dyndnn_ros dyndnn.launch.py model_config:=ofa_mbv3_gpu backend:=tensorrt
    ros2 launch dyndnn_ros dyndnn.launch.py sysfs_root:=/tmp/sim_jetson policy:=subnet_only
"""
from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = "dyndnn_ros"


def generate_launch_description() -> LaunchDescription:
    default_params = str(Path(get_package_share_directory(PACKAGE)) / "config" / "dyndnn.yaml")
    arguments = [
        DeclareLaunchArgument("params_file", default_value=default_params, description="Parameter file of every node"),
        DeclareLaunchArgument("model_config", default_value="groupconv_fashion",
                              description="config/models/<name>.yaml or a path"),
        DeclareLaunchArgument("backend", default_value="torch", description="torch, tensorrt or simulation"),
        DeclareLaunchArgument("sysfs_root", default_value="/", description="Where /sys lives: '/' on a Jetson, a simulated tree elsewhere"),
        DeclareLaunchArgument("policy", default_value="hierarchical", description="hierarchical, subnet_only, dvfs_only or static"),
        DeclareLaunchArgument("hardware_source", default_value="auto", description="auto, jtop, sysfs or simulation"),
        DeclareLaunchArgument("camera", default_value="true", description="Start the synthetic/folder camera source"),
    ]
    params = LaunchConfiguration("params_file")
    sysfs_root = {"sysfs_root": LaunchConfiguration("sysfs_root")}
    nodes = [
        Node(package=PACKAGE, executable="camera_node", name="camera_node", parameters=[params],
             condition=IfCondition(LaunchConfiguration("camera")), output="screen"),
        Node(package=PACKAGE, executable="inference_node", name="inference_node", output="screen",
             parameters=[params, {"model_config": LaunchConfiguration("model_config"),
                                  "backend": LaunchConfiguration("backend")}]),
        Node(package=PACKAGE, executable="resource_manager_node", name="resource_manager_node", output="screen",
             parameters=[params, {"policy": LaunchConfiguration("policy")}]),
        Node(package=PACKAGE, executable="dvfs_node", name="dvfs_node", output="screen",
             parameters=[params, sysfs_root]),
        Node(package=PACKAGE, executable="hardware_monitor_node", name="hardware_monitor_node", output="screen",
             parameters=[params, sysfs_root, {"source": LaunchConfiguration("hardware_source")}]),
    ]
    return LaunchDescription(arguments + nodes)
