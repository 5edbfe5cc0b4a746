# SPDX-License-Identifier: Apache-2.0
"""The `dyndnn` command: demo, up, target, status."""
