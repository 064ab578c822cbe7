"""The hot-path JSON encoder: same documents as ``json``, also for what orjson refuses."""

from __future__ import annotations

import json

from sandcell_gateway.fastjson import dumps, ndjson_line


def test_encodes_what_json_decodes_back() -> None:
    event = {"seq": 3, "msg_type": "stream",
             "content": {"name": "stdout", "text": "é\n\"quoted\"\t\u2603\x00" * 3}}
    assert json.loads(dumps(event)) == event
    line = ndjson_line(event)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == event


def test_integers_beyond_64_bits_fall_back_to_json() -> None:
    metadata = {"n": 10**30, "m": -(2**70)}
    assert json.loads(dumps(metadata)) == metadata
    assert json.loads(ndjson_line(metadata)) == metadata
