# SPDX-License-Identifier: Apache-2.0
"""Per-sub-network profiling (latency, throughput, memory, parameters, MACs) and Pareto fronts."""
