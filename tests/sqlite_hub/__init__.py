"""Tests of devhost's SQLite task hub: differential (vs. the in-memory reference) and crash."""
