"""A userspace netem: forwards IP packets between two TUN devices, dropping,
delaying (with jitter) and rate-limiting them on the way.

Why not tc netem: the kernels this project runs on in CI have no sch_netem
(`tc qdisc add … netem` answers "Specified qdisc kind is unknown"), and
they do have TUN. Packets really are lost, late and reordered, so TCP
underneath every client behaves as it would on such a link.

    impair.py HOST_TUN NS_TUN --control FILE

attaches to the two (persistent, already created) TUN devices, then forwards
both ways. The impairment is read from FILE, JSON
{"loss": 0.05, "delay_ms": 150, "jitter_ms": 50, "rate_bps": 8e6}, at start
and again on SIGUSR1; each direction is impaired alike (as a netem qdisc on
both ends of a veth pair would). Queues are bounded (QUEUE_LIMIT packets per
direction, dropped beyond, as netem's limit does). Prints "ready" once attached.
"""
import argparse
import fcntl
import heapq
import json
import os
import random
import select
import signal
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
QUEUE_LIMIT = 10000


def attach(name):
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    os.set_blocking(fd, False)
    return fd


class Direction:
    """Packets read from one device, waiting to be written to the other."""

    def __init__(self, out_fd):
        self.out = out_fd
        self.queue = []  # (due, seq, packet)
        self.link_free_at = 0.0
        self.seq = 0

    def offer(self, packet, now, s):
        if random.random() < s["loss"] or len(self.queue) >= QUEUE_LIMIT:
            return
        due = now + max(0.0, random.gauss(s["delay_ms"], s["jitter_ms"]) if s["jitter_ms"] else s["delay_ms"]) / 1000
        if s["rate_bps"]:
            # Serialised onto the link after whatever is ahead of it.
            self.link_free_at = max(now, self.link_free_at) + len(packet) * 8 / s["rate_bps"]
            due = max(due, self.link_free_at)
        self.seq += 1
        heapq.heappush(self.queue, (due, self.seq, packet))

    def flush(self, now):
        while self.queue and self.queue[0][0] <= now:
            _, _, packet = heapq.heappop(self.queue)
            try:
                os.write(self.out, packet)
            except OSError:
                # A full device queue (EAGAIN), or the far end not up yet
                # (EIO): the packet is lost, as on a real link.
                pass

    def next_due(self):
        return self.queue[0][0] if self.queue else None


def main():
    p = argparse.ArgumentParser()
    p.add_argument("host_tun")
    p.add_argument("ns_tun")
    p.add_argument("--control", required=True)
    a = p.parse_args()

    settings = {}

    def load(*_):
        s = json.load(open(a.control))
        settings.clear()
        settings.update(loss=float(s.get("loss", 0)), delay_ms=float(s.get("delay_ms", 0)),
                        jitter_ms=float(s.get("jitter_ms", 0)), rate_bps=float(s.get("rate_bps", 0)))

    load()
    signal.signal(signal.SIGUSR1, load)
    host, ns = attach(a.host_tun), attach(a.ns_tun)
    to_ns, to_host = Direction(ns), Direction(host)
    print("ready", flush=True)
    while True:
        now = time.monotonic()
        dues = [d for d in (to_ns.next_due(), to_host.next_due()) if d is not None]
        timeout = max(0.0, min(dues) - now) if dues else 1.0
        try:
            readable, _, _ = select.select([host, ns], [], [], timeout)
        except InterruptedError:
            continue
        now = time.monotonic()
        for fd in readable:
            direction = to_ns if fd == host else to_host
            for _ in range(64):  # a burst at most, then the other side gets a turn
                try:
                    packet = os.read(fd, 65535)
                except OSError:  # nothing more to read (EAGAIN), or the device went down
                    break
                direction.offer(packet, now, settings)
        to_ns.flush(now)
        to_host.flush(now)


if __name__ == "__main__":
    sys.exit(main())
