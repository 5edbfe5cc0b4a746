# SPDX-License-Identifier: Apache-2.0
"""Image-classification datasets for training and serving the dynamic networks (no ROS here)."""
