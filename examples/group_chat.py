"""Group chat between the members of a ZeroTier network, with no server.

Every message is one UDP datagram sent to the network's IPv4 broadcast
address; ZeroTier delivers it to every member of the network (the real core
turns Ethernet broadcast into a multicast to the members), so there is no
broker and nobody to configure. Each member binds the chat port with
``create_datagram_endpoint`` on its node.

Run: python examples/group_chat.py [-n 3]   (an offline network on this machine)
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from ztcore.offline import offline_world
from ztcore.runtime import NodeService

CHAT_PORT = 7777


class ChatRoom(asyncio.DatagramProtocol):
    """One member's view of the room: what it hears lands in ``inbox``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.inbox: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self.transport: Any = None
        self.broadcast = ""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:  # type: ignore[override]
        try:
            msg = json.loads(data)
            self.inbox.put_nowait((str(msg["from"]), str(msg["text"])))
        except (ValueError, KeyError, TypeError):
            pass  # not a chat message: ignore it

    def say(self, text: str) -> None:
        self.transport.sendto(
            json.dumps({"from": self.name, "text": text}).encode(), (self.broadcast, CHAT_PORT)
        )

    async def hear(self, timeout: float = 5.0) -> tuple[str, str]:
        return await asyncio.wait_for(self.inbox.get(), timeout)


async def join_room(node: NodeService, network_id: int, name: str, broadcast: str) -> ChatRoom:
    _transport, room = await node.create_datagram_endpoint(
        lambda: ChatRoom(name), CHAT_PORT, network=network_id
    )
    assert isinstance(room, ChatRoom)
    room.broadcast = broadcast
    return room


async def demo(n: int = 3) -> dict[str, list[str]]:
    """n members each say hello; returns what every member heard (sorted)."""
    async with offline_world(n) as world:
        rooms = [
            await join_room(m, world.network_id, f"member-{m.address_hex}", world.ipv4_broadcast())
            for m in world.members
        ]
        for room in rooms:
            room.say(f"hello from {room.name}")
        heard: dict[str, list[str]] = {}
        for room in rooms:
            lines = []
            for _ in range(n - 1):
                sender, text = await room.hear()
                lines.append(f"<{sender}> {text}")
            heard[room.name] = sorted(lines)
            print(f"{room.name} heard:", *heard[room.name], sep="\n  ")
        return heard


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=3, help="members (default 3)")
    asyncio.run(demo(ap.parse_args().n))


if __name__ == "__main__":
    main()
