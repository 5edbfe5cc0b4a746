"""Benchmarks of the dynamic models: `python -m dyndnn_ros.benchmarks.run_all`."""
