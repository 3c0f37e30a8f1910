"""The native engine's waiting queue: sequences, not requests, per owner (API key), admitted round-robin.

How requests are scheduled:

- **Counting.** A request is ``prompts × n`` sequences, and every limit counts sequences. The route asks
  :meth:`FairQueue.check_room` for all of a request's sequences before it queues any, so a request that cannot fit
  is refused whole: 429 while the queue is too full now, 400 when it is larger than the queue could ever take.
- **Per-key shares.** A key (``owner``) may hold at most :func:`key_share` of ``max_queue`` waiting and of
  ``max_num_seqs`` running: one eighth of each (at least one) is always left to the other keys, so a key that
  floods the server still leaves rows for another key's short request at the next step, without preemption. A
  key alone loses an eighth of the batch at most. Requests without a key (``--auth off``) share one owner, ``None``,
  with no share limit: the server behaves as one FIFO, as before.
- **Round-robin admission.** Each step admits one sequence per owner in turn (FIFO within an owner) while the
  batch has free rows and the step's prefill token budget lasts; the first sequence of a step is always admitted.
  An owner that was blocked (at its share, or its prompt over the budget) keeps its turn for the next step, and an
  owner that was served goes to the back.
"""

from __future__ import annotations

from collections import Counter, OrderedDict, deque
from collections.abc import Iterator
from typing import Protocol

from leptonkit.errors import InvalidInputError
from leptonkit.serve.engine.base import QueueFullError


class Waiting(Protocol):
    owner: str | None
    prompt_ids: list[int]
    aborted: bool


def key_share(limit: int) -> int:
    """What one key may take of ``limit`` (rows or queue places): all but an eighth, and at least one."""
    return max(1, limit - max(1, limit // 8))


class FairQueue:
    """Waiting sequences by owner; not thread-safe: the engine holds its condition's lock around every call."""

    def __init__(self, name: str, max_queue: int, max_num_seqs: int) -> None:
        self.name = name
        self.max_queue = max_queue
        self.key_queue = key_share(max_queue)
        self.key_running = key_share(max_num_seqs)
        self._queues: OrderedDict[str | None, deque[Waiting]] = OrderedDict()
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[Waiting]:
        return iter([seq for queue in list(self._queues.values()) for seq in list(queue)])

    def check_room(self, sequences: int, owner: str | None) -> None:
        """Raise unless ``sequences`` more sequences of ``owner`` fit now (429) or ever (400)."""
        limit = self.max_queue if owner is None else self.key_queue
        if sequences > limit:
            raise InvalidInputError(
                f"this request is {sequences} sequences (prompts x n) but model {self.name} queues at most {limit}"
                + ("" if owner is None else " per API key"),
                hint="send fewer prompts or a smaller n",
                param="n",
            )
        queued = len(self._queues.get(owner, ()))
        if self._size + sequences > self.max_queue or (owner is not None and queued + sequences > self.key_queue):
            raise QueueFullError(
                f"model {self.name} has {self._size} sequences waiting ({queued} of this key's); "
                f"{sequences} more would pass the limit of {self.max_queue} (a key may hold {self.key_queue})",
                hint="retry after a moment",
            )

    def push(self, seq: Waiting) -> None:
        self._queues.setdefault(seq.owner, deque()).append(seq)
        self._size += 1

    def admit(self, running: list[Waiting], slots: int, budget: int) -> list[Waiting]:
        """Take up to ``slots`` sequences whose prompts fit ``budget`` tokens, round-robin over owners."""
        held = Counter(s.owner for s in running)
        admitted: list[Waiting] = []
        blocked: set[str | None] = set()
        while slots > 0:
            owner = next((o for o in self._queues if o not in blocked), _NOBODY)
            if owner is _NOBODY:
                break
            seq = self._queues[owner][0]
            if seq.aborted:
                self._pop(owner)
                continue
            at_share = owner is not None and held[owner] >= self.key_running
            if at_share or (admitted and len(seq.prompt_ids) > budget):
                blocked.add(owner)
                continue
            self._pop(owner)
            if owner in self._queues:
                self._queues.move_to_end(owner)
            admitted.append(seq)
            held[owner] += 1
            budget -= len(seq.prompt_ids)
            slots -= 1
        return admitted

    def _pop(self, owner: str | None) -> None:
        queue = self._queues[owner]
        queue.popleft()
        self._size -= 1
        if not queue:
            del self._queues[owner]


_NOBODY = object()  # no owner left to try (``None`` is an owner: requests without an API key)
