"""Which setting names hold secrets, and the settings (or any printed text) with them masked.

Used wherever settings or errors are printed (``--check-config``, configuration
errors, every log line through exporter/log.py): a password given inline (rather
than from an env var or file) must still never be shown. Masked by default:

- values under a secret-looking key (password, token, sasl.*, api-key, ...);
- every value of a ``headers`` mapping (OTLP headers carry API keys under names no
  list can know: ``x-honeycomb-team``, ``dd-api-key``, ...);
- the userinfo of every URL (``http://user:pass@host`` -> ``http://***@host``);
- any secret value the configuration loader registered (:func:`register_secret`),
  wherever it appears in a message, e.g. an error that echoes a header.
"""
from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any

MASK = "***"
_SECRET_KEY = re.compile(r"password|secret|\.key\.pem$|^ssl\.key$|oauthbearer\.config|jaas|token|authorization"
                         r"|api[-_]?key", re.I)
#: scheme://userinfo@ : the userinfo part (up to the last @ before the host) is masked
_URL_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/?#\s@]*(?:@[^/?#\s@]*)*)@")
#: secret values shorter than this are not searched for in free text (masking every "ab" would
#: garble the logs); they are still masked where settings are printed
MIN_SCRUB_LENGTH = 4
_known: set[str] = set()
_known_lock = threading.Lock()
_known_pattern: re.Pattern[str] | None = None


def is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(key))


def mask_url(url: str) -> str:
    """``http://user:pass@host:4317`` -> ``http://***@host:4317``; other text unchanged."""
    return _URL_USERINFO.sub(lambda m: f"{m.group('scheme')}{MASK}@", url)


def register_secret(value: object) -> None:
    """Remember a secret value so that :func:`scrub` masks it in any text (log lines, errors)."""
    global _known_pattern
    if not isinstance(value, str) or len(value) < MIN_SCRUB_LENGTH:
        return
    with _known_lock:
        if value in _known:
            return
        _known.add(value)
        # longest first, so a secret that contains another is masked whole
        _known_pattern = re.compile("|".join(re.escape(v) for v in sorted(_known, key=len, reverse=True)))


def forget_secrets() -> None:
    """Forget every registered secret (tests loading many configurations in one process)."""
    global _known_pattern
    with _known_lock:
        _known.clear()
        _known_pattern = None


def scrub(text: str) -> str:
    """Text with URL userinfo and every registered secret value masked."""
    if "@" in text:
        text = mask_url(text)
    pattern = _known_pattern
    if pattern is not None:
        text = pattern.sub(MASK, text)
    return text


def scrub_value(value: Any) -> Any:
    """:func:`scrub` applied to every string inside a value (dicts, lists, tuples)."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: scrub_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub_value(v) for v in value]
    return value


def redact(doc: Any, *, _key: str = "") -> Any:
    """A copy of a settings document with every secret masked (see the module docstring)."""
    if isinstance(doc, dict):
        if _key == "headers":
            return {k: MASK if v not in (None, "") else v for k, v in doc.items()}
        return {k: (MASK if is_secret_key(str(k)) and v not in (None, "", {}) and not isinstance(v, dict)
                    else redact(v, _key=str(k))) for k, v in doc.items()}
    if isinstance(doc, list):
        return [redact(v) for v in doc]
    if isinstance(doc, str):
        return scrub(doc)
    return doc


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
