"""Fakes for tests: stand-ins that speak the real protocols (e.g. a scripted model server)."""
