# SPDX-License-Identifier: Apache-2.0
"""Trainers of the dynamic DNN families (`make models`): incremental group-convolution training
and Once-for-All progressive shrinking with a per-device Pareto search. A layer on top of models/,
datasets/ and profiling/ (the search times sub-networks); nothing below imports it."""
