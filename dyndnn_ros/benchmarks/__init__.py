# SPDX-License-Identifier: Apache-2.0
"""Benchmarks of the dynamic models: `python -m dyndnn_ros.benchmarks.run_all`."""
