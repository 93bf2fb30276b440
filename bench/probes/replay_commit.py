"""Probe (not a benchmark): replay with Pipeline.commit() called on every tick (every 256 lines).

Shows where replay's memory growth comes from: `replay` never calls Pipeline.commit(), so each
stream's acks.Ledger keeps one (seq, resourceVersion) entry per record (the live `run` calls
commit() every checkpoint.interval_seconds, which prunes it). Compare:

    /usr/bin/time -f '%M KiB' PY bench/probes/replay_commit.py stock   STREAM > /dev/null
    /usr/bin/time -f '%M KiB' PY bench/probes/replay_commit.py patched STREAM > /dev/null
"""
import sys

from exporter import cli, pipeline

if sys.argv[1] == "patched":
    _tick = pipeline.Pipeline.tick

    def tick(self):
        _tick(self)
        self.commit()
    pipeline.Pipeline.tick = tick
sys.exit(cli.main(["replay", sys.argv[2]]))
