"""What one cell's messages mean, stated once for every path that relays them: the REST
stream, the kernel connection and the Jupyter cell history.

- :class:`CellEnd`: a cell is over once its ``execute_reply`` (shell) and its ``idle`` status
  (IOPub) both came, in either order; only then has every output of it arrived.
- :class:`OutputBudget`: a cell's output allowance in UTF-8 bytes (:func:`output_size`).

Example::

    end, budget = CellEnd(), OutputBudget(32 << 20, "the rest of this cell's output is dropped")
    for msg in messages:
        for kept in budget.admit(msg):
            send(kept)
        if end.see(msg):
            break
"""

from __future__ import annotations

import json
from typing import Any

# only ever an annotation (postponed): replacing it changes nothing at run time
Message = dict[str, Any]  # pragma: no mutate
# the messages that carry a cell's output, and count against its budget
BULKY_TYPES = frozenset({"stream", "display_data", "update_display_data", "execute_result"})


class CellEnd:
    """Watches one cell's messages for its end (see the module docstring)."""

    def __init__(self) -> None:
        self.replied = False
        self.idle = False

    def see(self, msg: Message) -> bool:
        """Note ``msg``; True once the cell is over."""
        kind = msg["msg_type"]
        if kind == "execute_reply":
            self.replied = True
        elif kind == "status" and msg["content"].get("execution_state") == "idle":
            self.idle = True
        return self.over

    @property
    def over(self) -> bool:
        return self.replied and self.idle

    @property
    def ending(self) -> bool:
        """One of the two last messages came: the other follows at once."""
        return self.replied or self.idle


class OutputBudget:
    """Output past ``limit`` bytes is dropped, announced once by a stderr marker in its place.

    A kernel batches a tight print loop into messages of tens of MB, so the stream message that
    crosses the limit keeps the part of its text that fits. Other messages (status, replies,
    errors) always pass. ``limit`` None: no limit.

    >>> budget = OutputBudget(4, "dropped")
    >>> out = {"msg_type": "stream", "content": {"name": "stdout", "text": "abcdef"}}
    >>> [(m["content"]["name"], m["content"]["text"]) for m in budget.admit(out)]
    [('stdout', 'abcd'), ('stderr', '\\n[Sandcell: output truncated after 4 bytes; dropped]\\n')]
    >>> budget.admit(out), budget.truncated
    ([], True)
    """

    def __init__(self, limit: int | None, rest: str) -> None:
        self.limit = limit
        self._rest = rest
        self.used = 0
        self.truncated = False  # truth only: read as a flag, never compared

    def admit(self, msg: Message) -> list[Message]:
        """The messages to pass on in ``msg``'s place: itself, or its part that fits and the
        marker, or nothing."""
        if self.limit is None or msg["msg_type"] not in BULKY_TYPES:
            return [msg]
        room = self.limit - self.used
        self.used += output_size(msg["content"])
        if self.used <= self.limit:
            return [msg]
        if self.truncated:
            return []
        self.truncated = True
        kept = []
        if msg["msg_type"] == "stream" and room > 0:
            text = utf8_prefix(msg["content"]["text"], room)
            kept.append({**msg, "content": {**msg["content"], "text": text}})
        marker = f"\n[Sandcell: output truncated after {self.limit} bytes; {self._rest}]\n"
        kept.append({**msg, "msg_type": "stream", "content": {"name": "stderr", "text": marker}})
        return kept


def output_size(content: dict[str, Any]) -> int:
    """The bytes an output message's text or mime bundle takes as UTF-8 (what users count).

    >>> output_size({"text": "é€😀"}), output_size({"data": {"application/json": {"k": "é"}}})
    (9, 11)
    """
    if "text" in content:
        return utf8_len(content["text"])
    return sum(utf8_len(v) if isinstance(v, str)
               else len(json.dumps(v, ensure_ascii=False).encode("utf-8", "surrogatepass"))
               for v in content.get("data", {}).values())


def utf8_len(text: str) -> int:
    """``len(text.encode())``, counting a lone surrogate (valid in JSON) as its 3 bytes.

    A kernel may send ``"\\ud800"``: a plain ``encode()`` would raise on the reader's path.

    >>> utf8_len("aé€😀"), utf8_len("\\ud800")
    (10, 3)
    """
    return len(text.encode("utf-8", "surrogatepass"))


def utf8_prefix(text: str, size: int) -> str:
    """The longest prefix of ``text`` that is at most ``size`` bytes of UTF-8.

    A character that would straddle the line is left out whole.

    >>> utf8_prefix("é" * 3, 5), utf8_prefix("x😀", 4)
    ('éé', 'x')
    """
    return text.encode("utf-8", "surrogatepass")[:size].decode("utf-8", "ignore")
