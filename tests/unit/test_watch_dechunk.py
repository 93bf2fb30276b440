"""The watch body's own de-chunker (exporter/kube/client.py): any framing, any read sizes, same lines.

Beside the real ones: every live test reads the apiserver's chunked watch through it.
"""
from __future__ import annotations

import io
import random
import time

import pytest

from exporter.kube.client import _chunked_lines


def _frame(body: bytes, rnd: random.Random, max_chunk: int, ext: bool) -> bytes:
    out, i = [], 0
    while i < len(body):
        n = min(rnd.randint(1, max_chunk), len(body) - i)
        size = b"%x" % n + (b";name=value" if ext and rnd.random() < 0.2 else b"")
        out.append(size + b"\r\n" + body[i:i + n] + b"\r\n")
        i += n
    return b"".join(out) + b"0\r\n\r\n"


@pytest.mark.parametrize("seed", range(60))
def test_any_framing_and_read_sizes_give_the_same_lines(seed: int) -> None:
    rnd = random.Random(seed)
    lines = [b'{"type":"ADDED","n":%d,"pad":"%s"}\n' % (i, b"x" * rnd.randint(0, 700))
             for i in range(rnd.randint(0, 60))]
    raw = _frame(b"".join(lines), rnd, rnd.choice([1, 7, 100, 5000]), ext=seed % 2 == 1)
    src = io.BytesIO(raw + b"HTTP/1.1 next response on the connection")
    def read1(n: int) -> bytes:
        return src.read(rnd.randint(1, min(n, 3000)))
    got = [line + b"\n" for batch in _chunked_lines(read1) for line in batch]
    assert got == lines


def test_a_body_cut_inside_a_chunk_is_an_error_not_an_end() -> None:
    src = io.BytesIO(b'20\r\n{"type":"ADDED"}\n')
    with pytest.raises(ConnectionResetError):
        list(_chunked_lines(lambda n: src.read(n)))


def test_bad_framing_is_an_error() -> None:
    src = io.BytesIO(b"zz\r\nhello\r\n")
    with pytest.raises(ValueError):
        list(_chunked_lines(lambda n: src.read(n)))


def test_records_already_there_make_one_batch_and_linger_waits_only_while_events_flow() -> None:
    """Each read returns one record (as TLS does); what is readable at once joins the batch. Reads close
    together are a flow: once nothing more is readable, one linger before the next read."""
    chunks = [b"%x\r\n%s\r\n" % (len(x), x) for x in (b'{"n":1}\n', b'{"n":2}\n', b'{"n":3}\n')] + [b"0\r\n\r\n"]
    it = iter(chunks)
    readable_answers = iter([False, True, False, False])
    slept = []
    linger = 0.05
    real_sleep = time.sleep

    def fake_sleep(s: float) -> None:
        slept.append(s)
    time.sleep = fake_sleep  # type: ignore[assignment]
    try:
        out = list(_chunked_lines(lambda n: next(it, b""), lambda: next(readable_answers), linger))
    finally:
        time.sleep = real_sleep  # type: ignore[assignment]
    # read 1: nothing more readable, and no read before it (not a flow): handed on, no wait.
    # read 2: the third record was readable too: one batch of two; then nothing: a flow, so one linger.
    assert out == [[b'{"n":1}'], [b'{"n":2}', b'{"n":3}']]
    assert slept == [linger]
