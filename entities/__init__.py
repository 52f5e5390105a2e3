"""Durable entities of the app: the per-thread `history` entity."""

from entities.history import bp

__all__ = ["bp"]
