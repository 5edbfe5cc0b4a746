# SPDX-License-Identifier: Apache-2.0
"""A simulated Jetson for machines without one: board fixtures and the sysfs tree laid out from
them, the board's governors, and the simulator that runs sub-networks on the platform model."""
