"""The channel layer's Redis connection: redis-py's asyncio Connection whose writes can always be cancelled.

With a ``socket_timeout`` set, redis-py bounds each write with ``asyncio.wait_for``. On Python 3.11, ``wait_for``
loses a cancellation that arrives just as the write completes (fixed in 3.12, where ``wait_for`` is built on
``asyncio.timeout``). channels-redis cancels a consumer's receive when its websocket closes; that receive
writes a command to Redis every few seconds (its blocking pop waits 5 s in Redis), so a lost cancellation left
the receive looping for ever: the consumer never finished, and its Redis connection and task leaked. A
websocket refused at connect (not logged in, no role, unknown chart) hits the window nearly every time, since
its receive is sending its first commands when it is cancelled. Before the timeouts were set (redis-py's 5 s
read timeout racing the 5 s blocking pop) the loop ended on the next read timeout instead.

This class bounds the write with ``asyncio.timeout`` instead, which never swallows a cancellation; everything
else is redis-py's own. On Python 3.12 and later it changes nothing.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterable

from redis.asyncio.connection import Connection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError


class CancellableConnection(Connection):
    """A redis-py asyncio TCP connection whose socket writes never swallow a task's cancellation."""

    async def send_packed_command(self, command: bytes | str | Iterable[bytes], check_health: bool = True) -> None:
        if sys.version_info >= (3, 12) or not self.socket_timeout:
            # 3.12's wait_for is cancellation-safe; without a timeout redis-py writes directly.
            await super().send_packed_command(command, check_health)
            return
        if not self.is_connected:
            await self.connect_check_health(check_health=False)
        if check_health:
            await self.check_health()
        if isinstance(command, str):
            command = command.encode()
        if isinstance(command, bytes):
            command = [command]
        try:
            async with asyncio.timeout(self.socket_timeout):
                await self._send_packed_command(command)
        except TimeoutError:  # asyncio's timeout (the builtin TimeoutError, an OSError): caught before OSError
            await self.disconnect(nowait=True)
            raise RedisTimeoutError("Timeout writing to socket") from None
        except OSError as exc:
            await self.disconnect(nowait=True)
            number, message = ("UNKNOWN", exc.args[0]) if len(exc.args) == 1 else (exc.args[0], exc.args[1])
            raise RedisConnectionError(f"Error {number} while writing to socket. {message}.") from exc
        except BaseException:
            # Cancelled (or anything else) part-way through a write: the connection cannot be reused.
            await self.disconnect(nowait=True)
            raise
