"""Uploads a file with tuspy, the official Python tus client, unchanged.

Prints one JSON line when the upload URL is known ({"url", "resumed_at"})
and one when it is done ({"done", "offset"}). With --store, the URL is kept
in tuspy's own URL storage under the file's fingerprint, so a fresh process
given the same --store resumes the same upload, as an app would after a crash.

API_KEY in the environment, if set, is sent as `Authorization: Bearer …` on
every request (TusClient's headers); unset, none is sent. A refused request
prints {"error", "status"} and exits with status 1.
"""
import argparse
import json
import os
import sys

from tusclient import client
from tusclient.exceptions import TusCommunicationError
from tusclient.storage import filestorage

p = argparse.ArgumentParser()
p.add_argument("endpoint")
p.add_argument("file")
p.add_argument("--chunk-size", type=int, default=8 << 20)
p.add_argument("--store", required=True, help="tuspy URL storage file (JSON)")
p.add_argument("--title", default="tuspy upload")
p.add_argument("--checksum", action="store_true", help="send Upload-Checksum (sha1) with every chunk")
p.add_argument("--retries", type=int, default=3, help="tuspy's own retries of a failed chunk")
args = p.parse_args()

key = os.environ.get("API_KEY")
headers = {"Authorization": f"Bearer {key}"} if key else {}
storage = filestorage.FileStorage(args.store)
uploader = client.TusClient(args.endpoint, headers=headers).uploader(
    args.file,
    chunk_size=args.chunk_size,
    metadata={"filename": args.title, "filetype": "video/x-matroska"},
    store_url=True,
    url_storage=storage,
    upload_checksum=args.checksum,
    retries=args.retries,
    retry_delay=1,
)
try:
    resumed_at = uploader.offset if uploader.url else 0
    if not uploader.url:
        uploader.set_url(uploader.create_url())
        uploader.offset = 0
    print(json.dumps({"url": uploader.url, "resumed_at": resumed_at}), flush=True)
    uploader.upload()
except TusCommunicationError as e:
    print(json.dumps({"error": str(e), "status": getattr(e, "status_code", None)}), flush=True)
    sys.exit(1)
print(json.dumps({"done": uploader.url, "offset": uploader.offset}), flush=True)
storage.close()
