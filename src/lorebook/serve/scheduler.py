"""Shared models and a fair scheduler: many conversations generated at once, one token each in turn.

A loaded engine has one KV cache, so two streams on it would overwrite each other. A *slot* is a shallow
copy of the engine that shares every weight but owns its KV cache (~94 MB for SmolLM2 at 2048 tokens),
so up to `slots` replies can be in flight. One worker thread drives all of them round-robin, one token
per turn: every active reply advances at the same pace, and a short question is answered while a long
reply is still being written. Requests beyond the free slots wait in a queue that admits clients in
turn (round-robin over client ids, FIFO within a client), so one client sending many requests cannot
starve the others. The worker never waits on a reader: pieces go into per-request queues, so a slow
HTTP client only delays itself. Each request has a deadline and can be cancelled (barge-in, client
gone); either closes its generator, which ends generation at once.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import queue
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterator

from lorebook.errors import LorebookError
from lorebook.models.engine import Completion, Engine, GenerationOptions, Message, row_options

SLOT_CONTEXT = 2048  # tokens per slot cache; the chat route refuses longer prompts with a clear error
_DONE = object()


class QueueFull(LorebookError):
    """Too many requests waiting."""


class Ticket:
    """One generation request: its output arrives piece by piece, readable from async or sync code."""

    _ids = itertools.count(1)

    def __init__(self, engine: Engine, messages: list[Message], options: GenerationOptions, client: str,
                 deadline: float, loop: asyncio.AbstractEventLoop | None = None):
        self.id = next(self._ids)
        self.engine, self.messages, self.options, self.client = engine, messages, options, client
        self.deadline = deadline
        self.submitted = time.perf_counter()
        self.first_token_at: float | None = None
        self.completion: Completion | None = None
        self.error: Exception | None = None
        self.cancelled = threading.Event()
        self._loop = loop
        self._async: asyncio.Queue | None = asyncio.Queue() if loop else None
        self._sync: queue.Queue | None = None if loop else queue.Queue()

    def put(self, item) -> None:
        """Called by the worker: a text piece, an exception, or _DONE."""
        if self._async is not None:
            try:
                self._loop.call_soon_threadsafe(self._async.put_nowait, item)
            except RuntimeError:  # the event loop is closed: nobody is listening any more
                self.cancelled.set()
        else:
            self._sync.put(item)

    def cancel(self) -> None:
        self.cancelled.set()

    @staticmethod
    def _finished(item) -> bool:
        """True at the end of the reply; raises the generation's error."""
        if isinstance(item, Exception):
            raise item
        return item is _DONE

    async def pieces(self):
        """Async iterator over the reply's text pieces; raises the generation's error, if any."""
        try:
            while not self._finished(item := await self._async.get()):
                yield item
        finally:
            self.cancel()  # the reader left early (client disconnected): stop generating

    def __iter__(self) -> Iterator[str]:
        """Blocking iterator over the reply's pieces, for worker threads (the voice pipeline)."""
        try:
            while not self._finished(item := self._sync.get()):
                yield item
        finally:
            self.cancel()


class Scheduler:
    """Owns the worker thread, the slots of every engine and the fair waiting queue."""

    def __init__(self, slots: int = 8, queue_limit: int = 64, slot_context: int = SLOT_CONTEXT):
        self.max_slots = slots
        self.queue_limit = queue_limit
        self.slot_context = slot_context
        self._free: dict[int, list[Engine]] = {}  # id(engine) -> idle slot copies
        self._slot_count: dict[int, int] = {}
        self._waiting: OrderedDict[str, deque[Ticket]] = OrderedDict()  # client -> its tickets, in turn order
        self._active: list[tuple[Ticket, Engine, Iterator[str]]] = []
        self._lock = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="lorebook-scheduler", daemon=True)
        self._thread.start()

    def submit(self, ticket: Ticket) -> Ticket:
        """Queue a request; raises QueueFull when `queue_limit` requests are already waiting."""
        with self._lock:
            if sum(len(q) for q in self._waiting.values()) >= self.queue_limit:
                raise QueueFull(f"{self.queue_limit} requests are already waiting", "retry in a few seconds")
            self._waiting.setdefault(ticket.client, deque()).append(ticket)
            self._lock.notify()
        return ticket

    def stats(self) -> dict:
        with self._lock:
            return {"active": len(self._active), "waiting": sum(len(q) for q in self._waiting.values()),
                    "slots": self.max_slots}

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            self._lock.notify()
        self._thread.join(timeout=5)

    # -- worker side -------------------------------------------------------------------------------

    def _slot(self, engine: Engine) -> Engine | None:
        """An idle slot for `engine`, made on demand up to the limit; None when all are busy."""
        key = id(engine)
        free = self._free.setdefault(key, [])
        if free:
            return free.pop()
        count = self._slot_count.get(key, 0)
        limit = self.max_slots if engine.name == "torch" else 1  # llama.cpp keeps its own single state
        if count >= limit or len(self._active) >= self.max_slots:
            return None
        self._slot_count[key] = count + 1
        return engine if count == 0 else clone_engine(engine, self.slot_context)

    def _admit(self) -> None:
        """Move waiting tickets into free slots, one client at a time in turn."""
        for _ in range(len(self._waiting)):
            if not self._waiting or len(self._active) >= self.max_slots:
                return
            client, tickets = next(iter(self._waiting.items()))
            ticket = tickets[0]
            slot = self._slot(ticket.engine)
            if slot is None:
                self._waiting.move_to_end(client)
                continue
            tickets.popleft()
            del self._waiting[client]
            if tickets:  # the client's next request queues behind every other client
                self._waiting[client] = tickets
            if ticket.cancelled.is_set():
                self._release(ticket, slot)
                continue
            stream = iter(slot.stream(ticket.messages, ticket.options))
            self._active.append((ticket, slot, stream))

    def _release(self, ticket: Ticket, slot: Engine) -> None:
        self._free.setdefault(id(ticket.engine), []).append(slot)

    def _run(self) -> None:
        while True:
            with self._lock:
                self._admit()
                while not self._active and not self._stopped:
                    self._lock.wait()
                    self._admit()
                if self._stopped:
                    return
                batch = list(self._active)
            for entry in batch:
                self._step(entry)

    def _step(self, entry: tuple[Ticket, Engine, Iterator[str]]) -> None:
        ticket, slot, stream = entry
        finished, item = False, None
        try:
            if ticket.cancelled.is_set():
                finished = True
            elif time.perf_counter() > ticket.deadline:
                finished, item = True, TimeoutError("the request ran past the server's time limit")
            else:
                piece = next(stream)
                if ticket.first_token_at is None:
                    ticket.first_token_at = time.perf_counter()
                ticket.put(piece)
        except StopIteration:
            finished = True
            ticket.completion = slot.last
        except Exception as exc:  # noqa: BLE001 (any engine failure belongs to this request only)
            finished, item = True, exc
        if not finished:
            return
        close = getattr(stream, "close", None)
        if close:
            close()
        ticket.error = item
        ticket.put(item if item is not None else _DONE)
        if item is not None:
            ticket.put(_DONE)
        with self._lock:
            self._active.remove(entry)
            self._release(ticket, slot)
            self._lock.notify()


def clone_engine(engine: Engine, context: int) -> Engine:
    """A copy of a torch engine sharing all weights but with its own (smaller) KV cache and stream state."""
    import torch

    from lorebook.models.routed_engine import RoutedEngine

    if isinstance(engine, RoutedEngine):
        return engine.with_engines(clone_engine(engine.base, context), clone_engine(engine.taught, context))
    twin = copy.copy(engine)
    fast = getattr(engine, "fast", None)
    if fast is not None:
        fast_twin = copy.copy(fast)
        length = min(context, fast.max_len)
        shape = list(fast.k_cache.shape)
        shape[3] = length
        fast_twin.k_cache, fast_twin.v_cache = torch.zeros(shape), torch.zeros(shape)
        fast_twin.max_len = length
        twin.fast = fast_twin
        twin.context_length = min(engine.context_length, length)
    twin.last = Completion("", 0, 0, "stop")
    return twin


class ScheduledEngine:
    """An Engine look-alike whose `stream` goes through the scheduler (for ChatSession in voice turns)."""

    def __init__(self, engine: Engine, scheduler: Scheduler, client: str, timeout: float):
        self._engine, self._scheduler, self._client, self._timeout = engine, scheduler, client, timeout
        self.last = Completion("", 0, 0, "stop")
        self.current: Ticket | None = None

    def __getattr__(self, name):
        return getattr(self._engine, name)

    def stream(self, messages: list[Message], options: GenerationOptions | None = None) -> Iterator[str]:
        ticket = Ticket(self._engine, messages, options or GenerationOptions(), self._client,
                        time.perf_counter() + self._timeout)
        self.current = self._scheduler.submit(ticket)
        yield from ticket
        self.last = ticket.completion or self.last

    def chat_batch(self, conversations: list[list[Message]], options: GenerationOptions | None = None) -> list[str]:
        """One ticket per conversation, decoded side by side in the scheduler's slots (a persona's candidate
        replies). Sampled tickets get seeds seed, seed+1, …: the same conversation asked five times must give
        five samples, not one sample five times."""
        options = options or GenerationOptions()
        tickets = []
        for index, messages in enumerate(conversations):
            tickets.append(self._scheduler.submit(Ticket(self._engine, messages, row_options(options, index),
                                                         self._client, time.perf_counter() + self._timeout)))
        return ["".join(ticket) for ticket in tickets]
