# SPDX-License-Identifier: Apache-2.0
"""Evaluation: scenarios, a faster-than-real-time runner, metrics, report and plots."""
