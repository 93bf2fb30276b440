"""The command line: --version, replay's own flags and help, case-insensitive levels, and
--check-config refusing exactly what start-up refuses (exit 2, the setting named, no traceback).
"""
from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
EVENT = (b'{"type":"ADDED","object":{"apiVersion":"v1","kind":"Event",'
         b'"metadata":{"uid":"u1","resourceVersion":"7","namespace":"shop"},"reason":"BackOff","type":"Warning"}}\n')


def cli(*args: str, stdin: bytes | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    import os
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("KEE_", "OTEL_"))}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "exporter", *args], input=stdin, capture_output=True, cwd=ROOT,
                          timeout=60, env=full_env)


def test_version_prints_the_installed_package_version():
    p = cli("--version")
    assert p.returncode == 0
    assert p.stdout.decode().strip() == f"kube-event-exporter {importlib.metadata.version('kube-event-exporter')}"


def test_replay_takes_its_flags_before_the_file(tmp_path):
    f = tmp_path / "events.jsonl"
    f.write_bytes(EVENT)
    p = cli("replay", "--cluster-name", "c1", str(f))
    assert p.returncode == 0, p.stderr
    (rec,) = [json.loads(x) for x in p.stdout.splitlines()]
    assert rec["cluster"] == "c1" and rec["event"]["uid"] == "u1"


def test_flags_after_the_command_win_and_lists_add_up(tmp_path):
    p = cli("--cluster-name", "before", "--set", "records.recurring=every", "replay", "--cluster-name", "after",
            "--namespace", "a", "--check-config")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["records"]["cluster_name"] == "after"
    assert out["kubernetes"]["namespaces"] == ["a"]
    assert out["server"]["listen"] == ""  # replay: no metrics port unless asked for


def test_replay_help_is_replays_own():
    p = cli("replay", "--help")
    assert p.returncode == 0
    text = p.stdout.decode()
    assert text.startswith("usage: kube-event-exporter replay")
    assert "input file (default: - for stdin)" in text


def test_top_level_help_lists_the_commands_and_exit_codes():
    text = cli("--help").stdout.decode()
    assert "{run,replay}" in text and "--version" in text and "Exit codes" in text


@pytest.mark.parametrize("given", ["DEBUG", "Debug", "debug"])
def test_log_level_is_case_insensitive(given):
    p = cli("--log-level", given, "--check-config")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["log"]["level"] == "debug"


def test_debug_level_really_logs_debug_lines(tmp_path):
    f = tmp_path / "events.jsonl"
    f.write_bytes(EVENT)
    quiet = cli("replay", str(f), "--log-level", "WARNING")
    assert quiet.returncode == 0 and b"replay_done" not in quiet.stderr  # info is below warning


def test_namespace_flag_splits_on_commas():
    p = cli("--namespace", "a,b", "--namespace", "c", "--check-config")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["kubernetes"]["namespaces"] == ["a", "b", "c"]


def test_a_malformed_set_is_a_usage_error():
    p = cli("--set", "records.cluster_name", "--check-config")
    assert p.returncode == 2 and b"expected KEY=VALUE" in p.stderr


BAD = [
    (["--listen", "bogus"], "server.listen"),
    (["--listen", "127.0.0.1:99999"], "server.listen"),
    (["--set", "kubernetes.connect_timeout_seconds=0"], "kubernetes.connect_timeout_seconds"),
    (["--set", "kubernetes.inactivity_timeout_seconds=0"], "kubernetes.inactivity_timeout_seconds"),
    (["--set", "kubernetes.backoff_initial_seconds=60", "--set", "kubernetes.backoff_max_seconds=30"],
     "kubernetes.backoff_initial_seconds"),
    (["--set", "kubernetes.field_selector=type!!=Normal"], "kubernetes.field_selector"),
    (["--set", "kubernetes.label_selector=app in (a"], "kubernetes.label_selector"),
    (["--set", "kubernetes.namespaces=[a,b]", "--set", "kubernetes.namespaces=['a,b']"], "kubernetes.namespaces.0"),
    (["--set", "sinks.kafka.enabled=true", "--set", "sinks.kafka.brokers=127.0.0.1:9092",
      "--set", "sinks.kafka.config={sasl.pasword: x}"], "sinks.kafka.config.sasl.pasword"),
]


@pytest.mark.parametrize("args,field", BAD, ids=[b[1] + ":" + b[0][-1][:20] for b in BAD])
def test_check_config_and_start_up_refuse_the_same_way(args, field, tmp_path):
    """One validation entry: --check-config exits 2 naming the setting, and so does a start, before it connects."""
    kubeconfig = tmp_path / "kubeconfig"  # never reached: the settings are refused first
    kubeconfig.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n")
    check = cli(*args, "--check-config")
    start = cli("run", "--kubeconfig", str(kubeconfig), *args)
    for p in (check, start):
        assert p.returncode == 2, p.stderr
        assert f"configuration error at {field}:".encode() in p.stderr
        assert b"fix:" in p.stderr and b"Traceback" not in p.stderr
    assert check.stderr == start.stderr


def test_secrets_are_masked_in_check_config_output():
    p = cli("--check-config",
            "--set", "sinks.otlp.enabled=true",
            "--set", "sinks.otlp.endpoint=http://kee:pa55word-otlp@collector:4318",
            "--set", "sinks.otlp.headers={x-honeycomb-team: hc-abc123secret, dd-api-key: dd-key-value}",
            "--set", "sinks.kafka.config={sasl.password: hunter2-kafka, sasl.username: kee}")
    assert p.returncode == 0, p.stderr
    for secret in (b"pa55word-otlp", b"hc-abc123secret", b"dd-key-value", b"hunter2-kafka"):
        assert secret not in p.stdout
    out = json.loads(p.stdout)
    assert out["sinks"]["otlp"]["endpoint"] == "http://***@collector:4318"
    assert out["sinks"]["otlp"]["headers"] == {"x-honeycomb-team": "***", "dd-api-key": "***"}
    assert out["sinks"]["kafka"]["config"]["sasl.username"] == "kee"


def test_secrets_are_masked_in_configuration_errors():
    p = cli("--check-config", "--set", "sinks.otlp.enabled=true",
            "--set", "sinks.otlp.endpoint=http://kee:pa55word-otlp@collector:99999")
    assert p.returncode == 2
    assert b"sinks.otlp.endpoint" in p.stderr and b"pa55word-otlp" not in p.stderr


def test_a_crash_is_logged_with_its_traceback_and_exits_1():
    code = ("import sys; import exporter.runner as r\n"
            "def boom(cfg):\n    raise RuntimeError('kaboom')\n"
            "r.run = boom\n"
            "from exporter.cli import main\n"
            "sys.exit(main(['run', '--listen', '']))\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, cwd=ROOT, timeout=60)
    assert p.returncode == 1
    (line,) = [json.loads(x) for x in p.stderr.splitlines() if b'"crashed"' in x]
    assert line["level"] == "error" and line["command"] == "run"
    assert "Traceback" in line["exception"] and "RuntimeError: kaboom" in line["exception"]


def test_otlp_retry_log_lines_never_show_url_credentials_or_header_values(tmp_path):
    """The sink logs its endpoint on every failed export; the log layer masks what config named secret."""
    f = tmp_path / "events.jsonl"
    f.write_bytes(EVENT)
    import os
    import select
    import time
    proc = subprocess.Popen(
        [sys.executable, "-m", "exporter", "replay", str(f), "--set", "sinks.stdout.enabled=false",
         "--set", "sinks.otlp.enabled=true", "--set", "sinks.otlp.protocol=http/protobuf",
         "--set", "sinks.otlp.timeout_seconds=1", "--set", "sinks.otlp.endpoint=http://kee:pw-SECRET-1@127.0.0.1:1",
         "--set", "sinks.otlp.headers={x-honeycomb-team: hc-SECRET-2}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    assert proc.stderr is not None
    seen = b""
    try:
        deadline = time.monotonic() + 30
        while b"sink_delivery_failed_retrying" not in seen and time.monotonic() < deadline:
            if select.select([proc.stderr], [], [], 1.0)[0]:
                seen += os.read(proc.stderr.fileno(), 65536)
    finally:
        proc.kill()
        seen += proc.stderr.read()
        proc.wait()
    lines = [json.loads(x) for x in seen.splitlines() if x.startswith(b"{")]
    assert any(x["event"] == "sink_delivery_failed_retrying" for x in lines), seen[-2000:]
    assert {x["endpoint"] for x in lines if "endpoint" in x} == {"http://***@127.0.0.1:1/v1/logs"}, seen[-2000:]
    assert b"SECRET" not in seen


def test_a_listen_address_in_use_is_known_only_at_start_and_exits_2_with_the_fix(tmp_path):
    import socket
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        listen = f"127.0.0.1:{busy.getsockname()[1]}"
        assert cli("--listen", listen, "--check-config").returncode == 0
        p = cli("run", "--kubeconfig", str(kubeconfig), "--listen", listen)
    assert p.returncode == 2 and b"Traceback" not in p.stderr
    (line,) = [json.loads(x) for x in p.stderr.splitlines() if b"metrics_listen_failed" in x]
    assert line["listen"] == listen and "server.listen" in line["fix"]
