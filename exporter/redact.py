"""Which setting names hold secrets, and the settings with those values masked.

Used wherever settings are printed (``--check-config``, sink logs): a password
given inline (rather than from an env var or file) must still never be shown.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
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


#: scheme://userinfo@ : the userinfo part (up to the last @ before the host) is masked
_URL_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/?#\s@]*(?:@[^/?#\s@]*)*)@")


def mask_url(url: str) -> str:
    """``http://user:pass@host:4317`` -> ``http://***@host:4317``; other text unchanged."""
    return _URL_USERINFO.sub(lambda m: f"{m.group('scheme')}{MASK}@", url)


def mask_headers(headers: Mapping[str, Any]) -> dict[str, str]:
    """Header names with every value masked: a header's value is a credential more often than not
    (``x-honeycomb-team``, ``dd-api-key``, ``authorization``), whatever its name."""
    return {k: MASK for k in headers}


def mask_text(text: Any, secrets: Iterable[str]) -> str:
    """The text with every occurrence of each secret value replaced by ***, longest first
    (values under 3 characters are left: masking them would mangle the text, not protect it)."""
    out = str(text)
    for s in sorted({s for s in secrets if s and len(s) >= 3}, key=len, reverse=True):
        out = out.replace(s, MASK)
    return out
