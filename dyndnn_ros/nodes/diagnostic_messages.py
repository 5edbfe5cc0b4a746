# SPDX-License-Identifier: Apache-2.0
"""The core's health reports (dyndnn_ros.diagnostics) as a diagnostic_msgs/DiagnosticArray."""
from __future__ import annotations

from typing import Iterable

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from dyndnn_ros.diagnostics import Diagnostic


def diagnostic_status(report: Diagnostic, hardware_id: str) -> DiagnosticStatus:
    return DiagnosticStatus(
        level=bytes([int(report.level)]),
        name=report.name,
        message=report.message,
        hardware_id=hardware_id,
        values=[KeyValue(key=k, value=str(v)) for k, v in report.values.items()],
    )


def diagnostic_array(reports: Iterable[Diagnostic], hardware_id: str, stamp) -> DiagnosticArray:
    msg = DiagnosticArray(status=[diagnostic_status(r, hardware_id) for r in reports])
    msg.header.stamp = stamp
    return msg
