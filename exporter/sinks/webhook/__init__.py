"""The alert webhook sink (docs/webhook.md): presets for Slack, DingTalk, Feishu/Lark, Teams, generic JSON.

config.py (settings -> URL, secret, template, filter), template.py (the safe text template),
noise.py (grouping, folding, rate limit: pure, clocked), presets.py (each service's body,
signing and answers), transport.py (one POST with the standard library), sink.py (the sink).
"""
from exporter.sinks.webhook.config import check, secret_values
from exporter.sinks.webhook.sink import WebhookSink

__all__ = ["WebhookSink", "check", "secret_values"]
