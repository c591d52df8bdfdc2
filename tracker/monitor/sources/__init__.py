"""Deployment sources: one adapter per platform behind the `DeploymentSource` protocol.

Only the adapters import httpx or pymysql, and only when they are used.
"""

from tracker.monitor.sources.base import DeploymentSource, LogTail, Observation, outcome_of

__all__ = ["DeploymentSource", "LogTail", "Observation", "outcome_of"]
