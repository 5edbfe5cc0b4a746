"""Per-sub-network profiling (latency, throughput, memory, parameters, MACs) and Pareto fronts."""
