"""The app-facing entry point: ztcore.offline's world, the waits that raise, typed
user messages, and TCP between members (issue: apps talk over their own network)."""

from __future__ import annotations

import asyncio

import pytest

from ztcore.api import UserMessage
from ztcore.offline import offline_world


def test_an_offline_world_in_one_call() -> None:
    async def main() -> None:
        async with offline_world(2, timeout=20) as world:
            a, b = world.members
            for m in (a, b):
                assert m.node is not None and m.node.online
                info = await m.wait_network(world.network_id, 1)  # already usable: returns at once
                assert info["status"] == "OK"
            assert world.ipv4(a).startswith("10.147.17.") and world.ipv6(b).startswith("fd")
            assert world.ipv4(a) != world.ipv4(b)

            # User messages arrive as typed objects from an async iterator.
            async def first_message() -> UserMessage:
                async for msg in b.messages():
                    return msg
                raise AssertionError("the iterator ended")

            waiting = asyncio.ensure_future(first_message())
            await asyncio.sleep(0)  # let the iterator subscribe before the message goes out
            a.send_user_message(b.address, 0x1234, b"hello b")
            msg = await asyncio.wait_for(waiting, 10)
            assert msg == UserMessage(a.address, 0x1234, b"hello b")

            # TCP over the network with asyncio's own streams.
            async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                writer.write((await reader.readline()).upper())
                await writer.drain()
                writer.close()

            server = await b.start_server(echo, 7000, network=world.network_id)
            reader, writer = await a.open_connection(world.ipv4(b), 7000, network=world.network_id)
            writer.write(b"over ztcore tcp\n")
            await writer.drain()
            assert await asyncio.wait_for(reader.readline(), 10) == b"OVER ZTCORE TCP\n"
            writer.close()
            server.close()

    asyncio.run(main())


def test_waits_raise_and_say_what_they_last_saw() -> None:
    async def main() -> None:
        async with offline_world(0, timeout=20) as world:
            stranger = await world.add_member(authorize=False)
            with pytest.raises(TimeoutError, match="not ready after 1 s: ACCESS_DENIED"):
                await stranger.wait_network(world.network_id, 1)
            with pytest.raises(LookupError, match="is not joined"):
                await stranger.wait_network(0x1122334455667788, 1)
            world.authorize(stranger)
            info = await stranger.wait_network(world.network_id, 20)
            assert info["status"] == "OK" and info["assignedAddresses"]
            assert world.members == [stranger]

    asyncio.run(main())


def test_wait_online_raises_on_time_out() -> None:
    from ztcore.runtime import MemoryState, Runtime
    from ztcore.runtime.offline import make_loopback_planet

    async def main() -> None:
        from ztcore.identity import Identity

        # A planet whose root is not running: nobody will ever answer.
        planet = make_loopback_planet(Identity.generate(), "127.0.0.1", 9)
        async with Runtime() as rt:
            node = await rt.add_node(MemoryState(), bind=["127.0.0.1"], planet=planet, allow_loopback=True)
            with pytest.raises(TimeoutError, match="not online after 0.3 s"):
                await node.wait_online(0.3)

    asyncio.run(main())
