"""sinks.webhook settings -> what one instance sends with, validated (ConfigError naming the setting).

The URL (it carries the service's token) and the signing secret may come from the
settings, an environment variable or a file (a mounted Secret); whichever is used is
registered with exporter/redact.py by exporter/config.py, and :meth:`Resolved.safe_url`
is what log lines show: scheme, host and path without its last segment, no query.
"""
from __future__ import annotations

import os
import re
from typing import Any
from urllib.parse import urlsplit

from exporter.errors import ConfigError
from exporter.settings import WebhookSettings
from exporter.sinks.webhook.presets import PRESETS, SIGNED
from exporter.sinks.webhook.template import Template, TemplateError, field_path

_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")
#: a mounted secret is a short file; more than this is not one
MAX_SECRET_FILE_BYTES = 65536


def _read(path: str, setting: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read(MAX_SECRET_FILE_BYTES + 1)
    except (OSError, ValueError) as exc:
        raise ConfigError(setting, f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}",
                          "mount the Secret at that path (a volume) and check the file name") from exc
    if len(text) > MAX_SECRET_FILE_BYTES:
        raise ConfigError(setting, f"{path} is longer than a secret ({MAX_SECRET_FILE_BYTES} bytes)",
                          "give the file holding only the value")
    return text.strip()


def _one_of(where: str, what: str, inline: str | None, from_env: str | None, from_file: str | None,
            env: dict[str, str]) -> tuple[str | None, str]:
    """The value from exactly one source, and the setting it came from."""
    given = [(k, v) for k, v in ((what, inline), (f"{what}_from_env", from_env), (f"{what}_from_file", from_file))
             if v]
    if len(given) > 1:
        names = ", ".join(k for k, _ in given)
        raise ConfigError(f"{where}.{given[1][0]}", f"{what} is given more than once ({names})",
                          f"keep one of {what}, {what}_from_env, {what}_from_file")
    if not given:
        return None, f"{where}.{what}"
    key, value = given[0]
    setting = f"{where}.{key}"
    if key.endswith("_from_env"):
        got = env.get(value, "").strip()
        if not got:
            raise ConfigError(setting, f"environment variable {value} is not set or empty",
                              f"set {value} (e.g. from a Secret with env.valueFrom.secretKeyRef)")
        return got, setting
    if key.endswith("_from_file"):
        got = _read(value, setting)
        if not got:
            raise ConfigError(setting, f"{value} is empty", "the file must hold the value")
        return got, setting
    return value, setting


class Resolved:
    """One instance's settings, checked: URL, secret, template, group fields.

    (``filter`` is checked by exporter/config.py and built by exporter/app.py: transforms sit beside
    sinks in the layers, so a sink does not import them; it is given the predicate.)"""

    def __init__(self, cfg: WebhookSettings, index: int, env: dict[str, str] | None = None) -> None:
        env = dict(os.environ) if env is None else env
        where = f"sinks.webhook.{index}"
        self.where = where
        if not _NAME.fullmatch(cfg.name or ""):
            raise ConfigError(f"{where}.name", f"{cfg.name!r} is not an instance name",
                              "name each webhook: lowercase letters, digits, - and _, at most 40 (e.g. oncall-slack)")
        self.name = cfg.name
        if cfg.preset not in PRESETS:
            raise ConfigError(f"{where}.preset", f"unknown preset {cfg.preset!r}", "use " + ", ".join(PRESETS))
        url, url_setting = _one_of(where, "url", cfg.url, cfg.url_from_env, cfg.url_from_file, env)
        if not url:
            raise ConfigError(f"{where}.url", f"webhook {cfg.name!r} has no URL",
                              "set url, url_from_env or url_from_file (the service's webhook address)")
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError as exc:
            raise ConfigError(url_setting, "not a URL, or its port is not a number from 1 to 65535",
                              "give the webhook's https:// address") from exc
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(url_setting, "the webhook URL needs http:// or https:// and a host",
                              "give the webhook's https:// address as the service shows it")
        self.url = url
        self.url_setting = url_setting
        path = parts.path.rsplit("/", 1)[0] if parts.path.count("/") > 1 else parts.path
        self.safe_url = f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}{path}/***"
        secret, secret_setting = _one_of(where, "secret", None, cfg.secret_from_env, cfg.secret_from_file, env)
        if secret and cfg.preset not in SIGNED:
            raise ConfigError(secret_setting, f"preset {cfg.preset} has no signing",
                              "remove the secret, or use preset dingtalk or feishu")
        self.secret = secret
        self.secret_setting = secret_setting
        try:
            self.template = Template(cfg.template)
        except TemplateError as exc:
            raise ConfigError(f"{where}.template", str(exc),
                              "use {field} placeholders naming record fields, e.g. {reason} on {object.name}") from exc
        try:
            self.group_paths = [field_path(f) for f in cfg.group_by]
        except TemplateError as exc:
            raise ConfigError(f"{where}.group_by", str(exc), "list record fields, e.g. [object.name, reason]") from exc
        if cfg.retry_backoff_initial_seconds > cfg.retry_backoff_max_seconds:
            raise ConfigError(f"{where}.retry_backoff_initial_seconds", "more than retry_backoff_max_seconds",
                              "set retry_backoff_initial_seconds <= retry_backoff_max_seconds")

    def secrets(self) -> list[str]:
        """Values never to print: the URL, its query and path tokens, the signing secret."""
        parts = urlsplit(self.url)
        out = [self.url, parts.query, parts.path.rsplit("/", 1)[-1]]
        out += [v for _, _, v in (q.partition("=") for q in parts.query.split("&"))]
        if self.secret:
            out.append(self.secret)
        return [s for s in out if s and len(s) >= 6]

    def describe(self) -> dict[str, Any]:
        return {"webhook": self.name, "url": self.safe_url}


def check(hooks: list[WebhookSettings], env: dict[str, str]) -> list[ConfigError]:
    """Every instance's first problem, and names used twice: [] when all are valid. Pure but for files read."""
    out: list[ConfigError] = []
    seen: set[str] = set()
    for i, h in enumerate(hooks):
        try:
            Resolved(h, i, env)
        except ConfigError as exc:
            out.append(exc)
            continue
        if h.name in seen:
            out.append(ConfigError(f"sinks.webhook.{i}.name", f"{h.name!r} names two webhooks",
                                   "give each webhook its own name"))
        seen.add(h.name)
    return out


def secret_values(hooks: list[WebhookSettings], env: dict[str, str]) -> list[str]:
    """Every secret the instances hold (for exporter/redact.py), skipping instances that do not resolve."""
    out: list[str] = []
    for i, h in enumerate(hooks):
        try:
            out += Resolved(h, i, env).secrets()
        except ConfigError:
            for v in (h.url, env.get(h.url_from_env or ""), env.get(h.secret_from_env or "")):
                if v:
                    out.append(v)
    return out
