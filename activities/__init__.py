"""Activities of the app. `bp` carries them; function_app.py registers it.

Importing this package builds no clients: the `call_model` activity gets its model client
on first invocation.
"""

from activities.call_model import bp

__all__ = ["bp"]
