"""Orchestrations of the app: the eternal `thread` orchestration."""

from orchestrations.thread import bp

__all__ = ["bp"]
