#!/usr/bin/env python3
"""Copies videos' HLS trees, as the front door serves them, into a folder
that a plain NGINX serves straight from disk: the ceiling of the viewer
capacity search (scripts/capacity).

    mirror_hls.py --base http://127.0.0.1:8080 --out DIR ID [ID ...]

For each video: the master playlist, every media playlist it names
(video rungs and audio), and every init section and segment those name,
written under DIR/hls/<id>/ at the path the URL has. Query strings (the
viewer's session id) are dropped and absolute URLs made paths, so the copy
serves itself; the content-steering tag is left out, since the copy has no
steering server. Bytes are otherwise as served. A video with an EXT-X-KEY
(protected playback) is refused: its key is not a static file.
"""
import argparse
import os
import re
import sys
import urllib.parse
import urllib.request

URI_ATTR = re.compile(r'URI="([^"]+)"')


def get(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        if r.status != 200:
            raise RuntimeError(f"{url} answered {r.status}")
        return r.read()


def local(url):
    """The URL's path, no host, no query: where the copy keeps it."""
    return urllib.parse.urlsplit(url).path


def save(out, url, body):
    path = os.path.join(out, local(url).lstrip("/"))
    if not os.path.realpath(path).startswith(os.path.realpath(out) + os.sep):
        raise RuntimeError(f"{url} would be written outside {out}")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(body)


def rewrite(text, base):
    """(playlist text with every URI made a query-free path, [absolute URLs it names])."""
    named, lines = [], []
    for line in text.splitlines():
        if line.startswith("#EXT-X-CONTENT-STEERING"):
            continue
        if line.startswith("#EXT-X-KEY") and "METHOD=NONE" not in line:
            raise RuntimeError("the video is encrypted (EXT-X-KEY); mirror public, unencrypted videos only")
        if line.startswith("#"):
            def swap(m):
                url = urllib.parse.urljoin(base, m.group(1))
                named.append(url)
                return f'URI="{local(url)}"'
            lines.append(URI_ATTR.sub(swap, line))
        elif line.strip():
            url = urllib.parse.urljoin(base, line.strip())
            named.append(url)
            lines.append(local(url))
        else:
            lines.append(line)
    return "\n".join(lines) + "\n", named


def mirror(base, out, video):
    master_url = f"{base}/hls/{video}/master.m3u8"
    master, playlists = rewrite(get(master_url).decode(), master_url)
    save(out, master_url, master.encode())
    files = 1
    for pl in dict.fromkeys(playlists):
        text, media = rewrite(get(pl).decode(), pl)
        save(out, pl, text.encode())
        files += 1
        for url in dict.fromkeys(media):
            save(out, url, get(url))
            files += 1
    return files


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("ids", nargs="+")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    for video in a.ids:
        n = mirror(a.base.rstrip("/"), a.out, video)
        print(f"mirror_hls: {video}: {n} files", file=sys.stderr)


if __name__ == "__main__":
    main()
