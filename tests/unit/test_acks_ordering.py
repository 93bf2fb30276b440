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


def test_a_run_expected_at_once_and_a_seq_confirmed_before_it_was_expected():
    a = OrderedAcks()
    a.expect_many([1, 2, 3], 30)
    a.done(2, 10)
    a.done(5, 10)                 # confirmed on its own before its run was expected
    assert a.watermark() == 0
    a.expect_many([4, 5, 6], 30)
    a.done_many([1, 3], 20)
    assert a.watermark() == 3     # 4 not confirmed: 5 waits behind it
    a.done_many([4, 6], 20)
    assert a.watermark() == 6 and a.in_flight() == 0 and a.bytes == 0 and a.confirmed == 6
    a.expect_many([], 0)          # nothing: nothing changes
    assert a.watermark() == 6
    a.done(7, 10)                 # the whole next run was confirmed before it was expected
    a.expect_many([7], 10)
    assert a.watermark() == 7 and a.in_flight() == 0 and a.bytes == 0
