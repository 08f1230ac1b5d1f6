"""
Counting the boxes a server has read when most boxes get no answer: each
batch of boxes is followed by a sentinel C{Stats} call, and the server has
read the batch when the sentinel's answer comes (a connection's boxes are
read in order).  Batches whose sentinel did not come back when the
connection ended are unconfirmed.
"""

from __future__ import annotations

import contextlib
import socket
from collections import deque
from typing import Deque, Tuple

from .conns import Conn
from .wire import AmpAnswers, call_box

SENTINEL = b"sentinel-"


class SentinelStream:
    """
    A connection sending batches of boxes, each followed by a sentinel:
    C{queue_batch} queues one, C{read} returns how many boxes the answers
    that came prove read.
    """

    def __init__(self, conn: Conn) -> None:
        self.conn = conn
        self.answers = AmpAnswers()
        # (sentinel tag, boxes of its batch, when it was queued)
        self.inflight: Deque[Tuple[bytes, int, float]] = deque()
        self.sentinels = 0
        self.half_closed = False

    def queue_batch(self, data: bytes, boxes: int, now: float) -> None:
        self.sentinels += 1
        tag = SENTINEL + b"%d" % (self.sentinels,)
        self.conn.queue(data + call_box("Stats", tag))
        self.inflight.append((tag, boxes, now))

    def read(self) -> int:
        """
        Read what came; the boxes it proves read.
        """
        boxes = 0
        for tag in self.answers.feed(self.conn.read(keep=True)):
            if tag.startswith(SENTINEL):
                while self.inflight:
                    head, n, _ = self.inflight.popleft()
                    boxes += n
                    if head == tag:
                        break
        return boxes

    def unconfirmed(self) -> int:
        return sum(n for _, n, _ in self.inflight)

    def oldest(self) -> float:
        """
        When the oldest unconfirmed batch was queued (C{inf}: none).
        """
        return self.inflight[0][2] if self.inflight else float("inf")

    def half_close(self) -> None:
        """
        No more output: the server closes the connection once it read all.
        """
        self.half_closed = True
        with contextlib.suppress(OSError):
            self.conn.sock.shutdown(socket.SHUT_WR)
