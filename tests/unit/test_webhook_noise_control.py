"""Noise control with a fake clock: told once, repeats folded into one follow-up, quiet groups forgotten,
the rate limit summarised, group state bounded."""
from __future__ import annotations

from exporter.sinks.webhook.noise import Grouper, Message, RateLimit


def rec(name: str = "web-7d9f", reason: str = "BackOff", i: int = 0) -> dict:
    return {"reason": reason, "message": f"back-off {i}", "object": {"namespace": "shop", "name": name}}


def key(r: dict) -> tuple:
    return (r["object"]["namespace"], r["object"]["name"], r["reason"])


def run(g: Grouper, events: list[tuple[float, dict]], until: float) -> list[tuple[float, Message]]:
    """Feed occurrences at their times (collecting due follow-ups first, as the sink does)."""
    out: list[tuple[float, Message]] = []
    for seq, (t, r) in enumerate(events, 1):
        out += [(t, m) for m in g.due(t)]
        m = g.observe(key(r), r, seq, t)
        if m is not None:
            out.append((t, m))
    out += [(until, m) for m in g.due(until)]
    return out


def test_a_crash_loop_is_one_message_then_one_follow_up_per_window_with_exact_counts():
    g = Grouper(window=300, max_groups=100)
    events = [(i * 3.0, rec(i=i)) for i in range(100)]      # a BackOff every 3 s for 297 s
    msgs = run(g, events, until=301)
    assert [(t, m.kind, m.count) for t, m in msgs] == [(0.0, "first", 1), (301, "followup", 99)]
    follow = msgs[1][1]
    assert follow.record is not None and follow.record["message"] == "back-off 99"   # the last occurrence
    assert follow.seqs == list(range(2, 101)) and g.folded == 99


def test_repeats_across_windows_give_one_follow_up_per_window_and_a_quiet_group_is_forgotten():
    g = Grouper(window=60, max_groups=100)
    events = [(t, rec(i=int(t))) for t in range(0, 150, 10)]   # 0..140 every 10 s: 15 occurrences
    msgs = [(t, m.kind, m.count) for t, m in run(g, events, until=400)]
    # [0,60): first at 0, 10..50 folded (5), due when 60 arrives; [60,120): 60..110 (6); [120,180): 120..140 (3)
    assert msgs == [(0.0, "first", 1), (60, "followup", 5), (120, "followup", 6), (400, "followup", 3)]
    assert sum(c for _, _, c in msgs) == 15                    # every occurrence counted exactly once
    assert len(g) == 1  # the window opened at 400 is still open
    assert list(g.due(461)) == [] and len(g) == 0             # a window with nothing folded: gone quiet
    again = g.observe(("shop", "web-7d9f", "BackOff"), rec(), 99, 500)
    assert again is not None and again.kind == "first"         # told again, once


def test_groups_are_separate_and_bounded_the_oldest_evicted_and_counted():
    g = Grouper(window=300, max_groups=2)
    assert g.observe(("a",), rec("a"), 1, 0) is not None
    assert g.observe(("a",), rec("a"), 2, 1) is None           # folded into a's window
    assert g.observe(("b",), rec("b"), 3, 2) is not None
    assert g.observe(("c",), rec("c"), 4, 3) is not None       # evicts a (oldest window)
    assert len(g) == 2 and g.evicted == 1 and g.evicted_occurrences == 1 and g.evicted_seqs == [2]
    assert g.observe(("a",), rec("a"), 5, 4) is not None       # a is new again


def test_flush_at_close_sends_pending_follow_ups_early():
    g = Grouper(window=300, max_groups=10)
    run(g, [(0, rec()), (1, rec()), (2, rec())], until=3)
    assert [(m.kind, m.count, round(m.span)) for m in g.flush(10)] == [("followup", 2, 10)]
    assert len(g) == 0


def msg(i: int) -> Message:
    return Message("first", ("shop", f"pod-{i}", "BackOff"), rec(f"pod-{i}"), 1, 0.0, [i])


def test_rate_limit_suppresses_over_the_limit_then_sends_one_summary_when_room_frees():
    rl = RateLimit(per_minute=3)
    sent = [m for i in range(10) for m in rl.admit(msg(i), now=float(i))]   # 10 messages in 10 s
    assert [m.group[1] for m in sent] == ["pod-0", "pod-1", "pod-2"]
    assert rl.suppressed == 7 and rl.total_suppressed == 7
    assert rl.next_room() == 60.0                              # the first slot frees 60 s after pod-0
    assert rl.pending_summary(59.9) is None
    summary = rl.pending_summary(60.0)
    assert summary is not None and summary.kind == "suppressed" and summary.count == 7
    assert summary.record == {"suppressed_messages": 7, "more_groups": 2}   # 5 groups named, 2 more counted
    assert [g[1] for g in summary.suppressed_groups] == ["pod-3", "pod-4", "pod-5", "pod-6", "pod-7"]
    assert rl.suppressed == 0 and rl.summaries == 1


def test_a_message_admitted_while_a_summary_is_owed_is_preceded_by_it():
    rl = RateLimit(per_minute=2)
    rl.admit(msg(0), 0)
    rl.admit(msg(1), 0)
    assert rl.admit(msg(2), 1) == []                          # suppressed
    out = rl.admit(msg(3), 120)                                # both slots free again
    assert [m.kind for m in out] == ["suppressed", "first"] and out[0].count == 1


def test_without_gating_a_group_keeps_no_per_occurrence_state():
    g = Grouper(window=300, max_groups=10, keep_seqs=False)
    for i in range(10_000):
        g.observe(("a",), rec(i=i), i + 1, float(i) / 100)
    (follow,) = list(g.due(400))
    assert follow.count == 9_999 and follow.seqs == [] and follow.record["message"] == "back-off 9999"
