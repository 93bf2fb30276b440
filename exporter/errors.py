"""The exporter's own error tree; library errors are mapped onto it at their boundary.

    ExporterError
     +-- ConfigError          bad settings: names the field and the fix; exit 2
     +-- ApiError             a Kubernetes API answer we cannot use as is
     |    +-- Gone            410: the resourceVersion is compacted; relist
     |    +-- Forbidden       401/403: credentials or RBAC; fatal at start
     +-- SinkFatal            a sink cannot deliver until a person acts (auth, unknown topic)
"""
from __future__ import annotations


class ExporterError(Exception):
    pass


class ConfigError(ExporterError):
    def __init__(self, field: str, problem: str, fix: str) -> None:
        self.field, self.problem, self.fix = field, problem, fix
        super().__init__(f"configuration error at {field}: {problem} (fix: {fix})")


class ApiError(ExporterError):
    def __init__(self, status: int, message: str, retry_after: float | None = None) -> None:
        self.status, self.message, self.retry_after = status, message, retry_after
        super().__init__(f"Kubernetes API answered {status}: {message}")


class Gone(ApiError):
    pass


class Forbidden(ApiError):
    pass


class SinkFatal(ExporterError):
    def __init__(self, sink: str, setting: str, problem: str) -> None:
        self.sink, self.setting, self.problem = sink, setting, problem
        super().__init__(f"{sink} sink cannot deliver: {problem} (check {setting})")
