#!/usr/bin/env python3
"""A TCP relay on loopback that puts distance between its two sides: every
chunk is delivered DELAY ms after it arrived, in order, in both directions,
so a request and its answer cross a round trip of 2 x DELAY. Bandwidth is
not limited and nothing is dropped: this is latency only, the "distant
viewer" of the analysis (scripts/load distant).

    delay_proxy.py --listen 127.0.0.1:8091 --target 127.0.0.1:8080 --delay-ms 75

Why not tc netem: this kernel has no sch_netem (see impair.py), and the
distance sits between two loopback services (viewer or near edge, and the
front door), not between a namespace and the host. Only loopback addresses
are accepted on either side.

Memory is bounded: each direction holds at most QUEUE_CHUNKS chunks of at
most CHUNK bytes in flight; a full queue stops reading from the sender,
which TCP turns into back-pressure.
"""
import argparse
import asyncio
import ipaddress
import signal
import sys
import time

CHUNK = 64 * 1024
QUEUE_CHUNKS = 256  # at most 16 MiB in flight per direction


def loopback(addr):
    host, _, port = addr.rpartition(":")
    if not ipaddress.ip_address(host).is_loopback:
        raise argparse.ArgumentTypeError(f"{addr}: only loopback addresses (127.0.0.0/8, ::1)")
    return host, int(port)


async def pump(reader, writer, delay):
    """Reads chunks from one side and writes each to the other `delay` s after
    it arrived. Either half failing (a peer reset) ends both, so a dead
    connection never leaves a reader filling a queue nobody drains."""
    queue = asyncio.Queue(QUEUE_CHUNKS)

    async def receive():
        while True:
            data = await reader.read(CHUNK)
            await queue.put((time.monotonic() + delay, data or None))
            if not data:
                return

    async def deliver():
        while True:
            due, data = await queue.get()
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if data is None:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    recv, send = asyncio.create_task(receive()), asyncio.create_task(deliver())
    try:
        await asyncio.wait({recv, send}, return_when=asyncio.FIRST_EXCEPTION)
        if recv.done() and not recv.cancelled() and recv.exception() is None:
            await send  # the end of the stream is queued: let what is left go out
    except (ConnectionError, OSError):
        pass
    finally:
        for t in (recv, send):
            t.cancel()
        for t in (recv, send):
            if t.done() and not t.cancelled():
                t.exception()  # retrieved: a reset peer is not an error worth a traceback


async def relay(client_r, client_w, target, delay):
    try:
        # The connection set-up crosses the distance too (SYN, SYN-ACK).
        await asyncio.sleep(delay * 2)
        up_r, up_w = await asyncio.open_connection(*target)
    except OSError:
        client_w.close()
        return
    try:
        await asyncio.gather(pump(client_r, up_w, delay), pump(up_r, client_w, delay))
    finally:
        for w in (client_w, up_w):
            w.close()


async def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--listen", type=loopback, required=True)
    ap.add_argument("--target", type=loopback, required=True)
    ap.add_argument("--delay-ms", type=float, required=True, help="one-way delay")
    a = ap.parse_args()
    if not 0 <= a.delay_ms <= 5000:
        ap.error("--delay-ms must be between 0 and 5000")
    delay = a.delay_ms / 1000
    server = await asyncio.start_server(lambda r, w: relay(r, w, a.target, delay), *a.listen, reuse_address=True)
    stop = asyncio.Event()
    for s in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(s, stop.set)
    print(f"delay_proxy: {a.listen[0]}:{a.listen[1]} -> {a.target[0]}:{a.target[1]}, {a.delay_ms:g} ms each way", file=sys.stderr, flush=True)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
