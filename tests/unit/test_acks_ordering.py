"""The checkpoint never passes an unconfirmed record, whatever order confirmations arrive in."""
from exporter.acks import Ledger, OrderedAcks, rv_key, rv_newer


def test_rv_order_is_length_then_lexicographic():
    assert rv_newer("10", "9")
    assert not rv_newer("9", "10")
    assert rv_newer("100000000000000000000000", "99999999999999999999999")  # beyond int64
    assert rv_newer("1", None)
    assert sorted(["10", "9", "100"], key=rv_key) == ["9", "10", "100"]


def test_out_of_order_confirmations_keep_the_watermark_at_the_oldest_gap():
    a = OrderedAcks()
    for s in (1, 2, 3, 5):
        a.expect(s)
    a.done(2)
    a.done(5)
    assert a.watermark() == 0
    a.done(1)
    assert a.watermark() == 2
    a.done(3)
    assert a.watermark() == 5 and a.in_flight() == 0


def test_ledger_commits_only_positions_covered_by_the_watermark():
    led = Ledger("5")
    led.position(1, "10")
    led.position(2, "11")
    led.position(2, "15")  # a bookmark after record 2: same seq, later RV
    led.position(3, "20")
    assert led.advance(0) == "5"
    assert led.advance(1) == "10"
    assert led.advance(2) == "15"
    assert led.pending() == 1
    assert led.advance(3) == "20"


def test_positions_without_records_commit_immediately():
    led = Ledger(None)
    led.position(0, "42")  # bookmark before any record
    assert led.advance(0) == "42"
