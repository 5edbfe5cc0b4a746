# SPDX-License-Identifier: Apache-2.0
"""Thin ROS 2 nodes: they wire the pure-Python core to topics and parameters, and hold no logic
worth testing alone."""
