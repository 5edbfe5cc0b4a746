"""The `dyndnn` command: demo, up, target, status."""
