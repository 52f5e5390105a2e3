"""Durable entities of the app: a thread's storage (`storage.bp`) and the legacy
single-blob history (`legacy_history.bp`); function_app.py registers both."""
