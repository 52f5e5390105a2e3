"""Orchestrations of the app: the eternal `thread` orchestration and `maintenance`."""
