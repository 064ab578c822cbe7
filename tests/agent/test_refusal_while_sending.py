"""A write the agent refuses while the client is still sending reaches it as that refusal."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from sandcell_agent._proto import sandbox_pb2 as pb
from sandcell_agent._proto import sandbox_pb2_grpc as rpc
from sandcell_agent.paths import Roots
from sandcell_agent.server import Agent, serve

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("attempt", range(5))  # the race it guards against is a timing one
async def test_past_max_size_while_still_sending(tmp_path: Path, attempt: int) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    server = serve(str(tmp_path / "agent.sock"), Agent(Roots(str(workspace), str(tmp_path))))
    channel = grpc.aio.insecure_channel(f"unix:{tmp_path / 'agent.sock'}")
    try:
        call = rpc.SandboxAgentStub(channel).WriteFile()
        await call.write(pb.WriteChunk(header=pb.WriteHeader(path="big", max_size=1 << 20)))
        for _ in range(8):  # the agent refuses after the second chunk; these keep coming
            await call.write(pb.WriteChunk(data=b"x" * (512 << 10)))
        await call.done_writing()
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert dict(info.value.trailing_metadata() or ())["sandcell-error"] == "file_too_large"
        assert list(workspace.iterdir()) == []
    finally:
        await channel.close()
        server.stop(grace=0).wait()
