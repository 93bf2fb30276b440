"""Which setting names hold secrets, and the settings with those values masked.

Used wherever settings are printed (``--check-config``, sink logs): a password
given inline (rather than from an env var or file) must still never be shown.
"""
from __future__ import annotations

import re
from typing import Any

MASK = "***"
_SECRET_KEY = re.compile(r"password|secret|\.key\.pem$|^ssl\.key$|oauthbearer\.config|jaas|token|authorization"
                         r"|api[-_]?key", re.I)


def is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(key))


def redact(doc: Any) -> Any:
    """A copy of a settings document with every value under a secret-looking key masked."""
    if isinstance(doc, dict):
        return {k: (MASK if is_secret_key(str(k)) and v not in (None, "", {}) and not isinstance(v, dict)
                    else redact(v)) for k, v in doc.items()}
    if isinstance(doc, list):
        return [redact(v) for v in doc]
    return doc
