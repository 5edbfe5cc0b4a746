# SPDX-License-Identifier: Apache-2.0
"""Hardware back ends: Jetson clock files (sysfs), hardware status sources (jtop, sysfs/procfs,
simulation)."""
