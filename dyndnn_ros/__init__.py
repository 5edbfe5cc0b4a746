# SPDX-License-Identifier: Apache-2.0
"""dyndnn_ros: dynamic DNNs and a hierarchical runtime manager (sub-network + DVFS) for ROS 2
robots."""
