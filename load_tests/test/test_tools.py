"""Unit tests of the load tooling written in Python (the unit-py tier of
scripts/test): the HLS mirror's playlist rewrite, the delay relay, and the
fault and capacity scripts' refusal of bad arguments before they touch
anything."""
import asyncio
import os
import socket
import subprocess
import sys
import time
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "load_tests", "tools"))
import mirror_hls  # noqa: E402

MASTER = """#EXTM3U
#EXT-X-CONTENT-STEERING:SERVER-URI="/steering/abc?sid=s1",PATHWAY-ID="primary"
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud",NAME="en",URI="audio/index.m3u8?sid=s1"
#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=640x360,AUDIO="aud",PATHWAY-ID="primary"
360p/index.m3u8?sid=s1
#EXT-X-STREAM-INF:BANDWIDTH=2500000,RESOLUTION=1280x720,AUDIO="aud",PATHWAY-ID="secondary"
http://127.0.0.1:8013/hls/abc/720p/index.m3u8?sid=s1
"""


class MirrorRewrite(unittest.TestCase):
    def test_uris_become_query_free_paths_and_steering_is_dropped(self):
        text, named = mirror_hls.rewrite(MASTER, "http://127.0.0.1:8080/hls/abc/master.m3u8?sid=s1")
        self.assertNotIn("CONTENT-STEERING", text)
        self.assertNotIn("sid=", text)
        self.assertIn('URI="/hls/abc/audio/index.m3u8"', text)
        self.assertIn("\n/hls/abc/360p/index.m3u8\n", text)
        self.assertIn("\n/hls/abc/720p/index.m3u8\n", text)
        self.assertEqual(named, [
            "http://127.0.0.1:8080/hls/abc/audio/index.m3u8?sid=s1",
            "http://127.0.0.1:8080/hls/abc/360p/index.m3u8?sid=s1",
            "http://127.0.0.1:8013/hls/abc/720p/index.m3u8?sid=s1",
        ])

    def test_media_playlist_names_init_and_segments(self):
        media = '#EXTM3U\n#EXT-X-MAP:URI="init.mp4"\n#EXTINF:6.0,\nseg-0.m4s\n#EXT-X-ENDLIST\n'
        text, named = mirror_hls.rewrite(media, "http://h/hls/abc/360p/index.m3u8")
        self.assertEqual(named, ["http://h/hls/abc/360p/init.mp4", "http://h/hls/abc/360p/seg-0.m4s"])
        self.assertIn('#EXT-X-MAP:URI="/hls/abc/360p/init.mp4"', text)
        self.assertTrue(text.rstrip().endswith("#EXT-X-ENDLIST"))

    def test_encrypted_video_is_refused(self):
        with self.assertRaisesRegex(RuntimeError, "encrypted"):
            mirror_hls.rewrite('#EXTM3U\n#EXT-X-KEY:METHOD=AES-128,URI="../content.key"\n', "http://h/hls/a/360p/index.m3u8")

    def test_a_path_outside_the_copy_is_refused(self):
        with self.assertRaisesRegex(RuntimeError, "outside"):
            mirror_hls.save("/tmp/mirror-test-out", "http://h/../../etc/x", b"")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DelayRelay(unittest.TestCase):
    PROXY = os.path.join(ROOT, "load_tests", "faults", "delay_proxy.py")

    def test_non_loopback_addresses_are_refused(self):
        r = subprocess.run([sys.executable, self.PROXY, "--listen", "10.1.2.3:80", "--target", "127.0.0.1:1", "--delay-ms", "1"],
                           capture_output=True, text=True, timeout=20)
        self.assertEqual(r.returncode, 2)
        self.assertIn("only loopback", r.stderr)

    def test_bytes_arrive_intact_and_no_sooner_than_the_round_trip(self):
        echo_port, relay_port, delay_ms = free_port(), free_port(), 60
        payload = os.urandom(1 << 20)

        async def scenario():
            async def echo(r, w):
                w.write(await r.readexactly(len(payload)))
                await w.drain()
                w.close()
            server = await asyncio.start_server(echo, "127.0.0.1", echo_port)
            proc = await asyncio.create_subprocess_exec(sys.executable, self.PROXY, "--listen", f"127.0.0.1:{relay_port}",
                                                        "--target", f"127.0.0.1:{echo_port}", "--delay-ms", str(delay_ms),
                                                        stderr=asyncio.subprocess.PIPE)
            try:
                await asyncio.wait_for(proc.stderr.readline(), 10)  # listening
                r, w = await asyncio.open_connection("127.0.0.1", relay_port)
                started = time.monotonic()
                w.write(payload)
                await w.drain()
                got = await asyncio.wait_for(r.readexactly(len(payload)), 20)
                elapsed = time.monotonic() - started
                w.close()
                return got, elapsed
            finally:
                proc.terminate()
                await proc.wait()
                server.close()

        got, elapsed = asyncio.run(scenario())
        self.assertEqual(got, payload)
        # A lower bound only: a slow machine makes it later, never sooner.
        self.assertGreaterEqual(elapsed, 2 * delay_ms / 1000)


    def test_a_reset_upstream_closes_the_client_side_too(self):
        upstream_port, relay_port = free_port(), free_port()

        async def scenario():
            async def reset(r, w):
                # SO_LINGER 0: close with a reset, as a crashed server's kernel does.
                sock = w.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                w.transport.abort()
            server = await asyncio.start_server(reset, "127.0.0.1", upstream_port)
            proc = await asyncio.create_subprocess_exec(sys.executable, self.PROXY, "--listen", f"127.0.0.1:{relay_port}",
                                                        "--target", f"127.0.0.1:{upstream_port}", "--delay-ms", "10",
                                                        stderr=asyncio.subprocess.PIPE)
            try:
                await asyncio.wait_for(proc.stderr.readline(), 10)
                r, w = await asyncio.open_connection("127.0.0.1", relay_port)
                w.write(b"x" * 1024)
                await w.drain()
                try:
                    got = await asyncio.wait_for(r.read(), 5)  # EOF, not a hang
                except ConnectionResetError:
                    got = b""
                w.close()
                return got
            finally:
                proc.terminate()
                await proc.wait()
                server.close()

        self.assertEqual(asyncio.run(scenario()), b"")


class ScriptArguments(unittest.TestCase):
    """Bad arguments stop the scripts with exit 2 and a message, before any load or fault."""

    def run_script(self, *args):
        return subprocess.run([os.path.join(ROOT, "scripts", args[0]), *args[1:]], capture_output=True, text=True, timeout=30)

    def test_faults_infra_refuses_an_unknown_row(self):
        r = self.run_script("faults-infra", "--rows", "baseline,meteor")
        self.assertEqual(r.returncode, 2)
        self.assertIn("no row 'meteor'", r.stderr)

    def test_faults_infra_refuses_a_fault_too_late_in_the_run(self):
        r = self.run_script("faults-infra", "--duration", "30", "--at", "25")
        self.assertEqual(r.returncode, 2)
        self.assertIn("--at must leave", r.stderr)

    def test_capacity_refuses_a_start_above_the_max(self):
        r = self.run_script("capacity", "--start", "100", "--max", "50")
        self.assertEqual(r.returncode, 2)
        self.assertIn("--start", r.stderr)

    def test_load_refuses_an_unknown_scenario(self):
        r = self.run_script("load", "meteor")
        self.assertEqual(r.returncode, 2)
        self.assertIn("no scenario 'meteor'", r.stderr)


if __name__ == "__main__":
    unittest.main()
