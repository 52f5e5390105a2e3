"""How big a value is on the wire: the one measure every payload limit of the app uses.

Payload caps, page and blob sizes, the context window budget and a generation's size all
count bytes the same way: the value serialized as the Durable SDKs serialize it.
"""

from __future__ import annotations

import json
from typing import Any


def encoded_size(value: Any) -> int:
    """Bytes `value` takes once the Durable SDKs serialize it (JSON, ASCII-escaped)."""
    return len(json.dumps(value))
