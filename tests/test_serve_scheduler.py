"""The fair scheduler with fake engines: interleaving, client fairness, slow readers, limits, cancel."""

from __future__ import annotations

import threading
import time

import pytest

from lorebook.models.engine import Completion, GenerationOptions
from lorebook.serve.scheduler import QueueFull, Scheduler, Ticket, clone_engine

ORDER: list[str] = []
ORDER_LOCK = threading.Lock()


class FakeEngine:
    """Yields `tokens` pieces named after the request, recording the global order of steps."""

    name = "torch"
    context_length = 2048
    fast = None

    def __init__(self, tokens: int = 5, delay: float = 0.0):
        self.tokens, self.delay = tokens, delay
        self.last = Completion("", 0, 0, "stop")

    def stream(self, messages, options):
        label = messages[-1]["content"]
        for index in range(self.tokens):
            time.sleep(self.delay)
            with ORDER_LOCK:
                ORDER.append(label)
            yield f"{label}{index} "
        self.last = Completion("", 1, self.tokens, "stop")


def ticket(engine, label: str, client: str = "c", timeout: float = 30.0) -> Ticket:
    return Ticket(engine, [{"role": "user", "content": label}], GenerationOptions(), client,
                  time.perf_counter() + timeout)


@pytest.fixture(autouse=True)
def clear_order():
    ORDER.clear()


def test_active_requests_advance_token_by_token_in_turn():
    scheduler = Scheduler(slots=2)
    engine = FakeEngine(tokens=4, delay=0.002)
    first, second = ticket(engine, "a"), ticket(engine, "b", client="other")
    scheduler.submit(first), scheduler.submit(second)
    assert "".join(first) == "a0 a1 a2 a3 " and "".join(second) == "b0 b1 b2 b3 "
    scheduler.stop()
    assert ORDER[:4] in (["a", "b", "a", "b"], ["b", "a", "b", "a"])  # interleaved, not one after the other
    assert first.completion.completion_tokens == 4


def test_waiting_clients_are_admitted_in_turn():
    scheduler = Scheduler(slots=1)
    engine = FakeEngine(tokens=2, delay=0.005)
    greedy = [ticket(engine, f"g{i}", client="greedy") for i in range(3)]
    for item in greedy:
        scheduler.submit(item)
    polite = scheduler.submit(ticket(engine, "p", client="polite"))
    for item in [*greedy, polite]:
        list(item)
    scheduler.stop()
    served = list(dict.fromkeys(ORDER))
    assert served.index("p") < served.index("g2")  # the second client does not wait behind all of the first's


def test_a_reader_that_never_reads_does_not_block_others():
    scheduler = Scheduler(slots=2)
    engine = FakeEngine(tokens=50)
    scheduler.submit(ticket(engine, "slow"))  # nobody ever reads this one
    started = time.perf_counter()
    assert "".join(scheduler.submit(ticket(engine, "fast", client="x"))).startswith("fast0")
    assert time.perf_counter() - started < 5
    scheduler.stop()


def test_queue_limit_deadline_and_cancel():
    scheduler = Scheduler(slots=1, queue_limit=1)
    engine = FakeEngine(tokens=200, delay=0.01)
    running = scheduler.submit(ticket(engine, "run", timeout=0.2))
    time.sleep(0.05)  # let the worker admit it
    waiting = scheduler.submit(ticket(engine, "wait"))
    with pytest.raises(QueueFull):
        scheduler.submit(ticket(engine, "refused"))
    with pytest.raises(TimeoutError):
        list(running)
    waiting.cancel()  # admitted after the timeout; cancelling ends it long before its 200 tokens
    assert len(list(waiting)) < 200
    assert scheduler.stats() == {"active": 0, "waiting": 0, "slots": 1}
    scheduler.stop()


def test_cancelled_ticket_stops_generation():
    scheduler = Scheduler(slots=1)
    engine = FakeEngine(tokens=1000, delay=0.001)
    item = scheduler.submit(ticket(engine, "c"))
    pieces = iter(item)
    next(pieces)
    pieces.close()  # the reader went away
    time.sleep(0.1)
    count = len(ORDER)
    time.sleep(0.1)
    assert len(ORDER) == count < 1000
    scheduler.stop()


def test_slot_clone_shares_weights_but_not_cache(tiny_model_dir):
    from lorebook.models.engine import load_engine

    engine = load_engine(str(tiny_model_dir))
    twin = clone_engine(engine, 256)
    assert twin.fast.layers is engine.fast.layers
    assert twin.fast.k_cache.data_ptr() != engine.fast.k_cache.data_ptr() and twin.fast.max_len == 256
    options = GenerationOptions(temperature=0, max_tokens=8)
    messages = [{"role": "user", "content": "hi"}]
    assert "".join(twin.stream(messages, options)) == "".join(engine.stream(messages, options))


def test_a_reply_abandoned_mid_stream_does_not_cut_the_next_one(tiny_model_dir):
    """Barge-in closes a stream after a few pieces; the next reply on that engine must still be whole."""
    from lorebook.models.engine import load_engine

    engine = load_engine(str(tiny_model_dir))
    options = GenerationOptions(temperature=0, max_tokens=24)
    messages = [{"role": "user", "content": "hi"}]
    whole = "".join(engine.stream(messages, options))
    abandoned = iter(engine.stream(messages, options))
    assert next(abandoned) and next(abandoned)
    abandoned.close()
    assert "".join(engine.stream(messages, options)) == whole
