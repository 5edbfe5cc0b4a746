# SPDX-License-Identifier: Apache-2.0
"""The real board's files: which board and power mode this is, its clock files (sysfs, jtop), and
hardware status sources (jtop, sysfs/procfs under a root that is `/` on a robot)."""
