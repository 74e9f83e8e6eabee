"""Uploads under an impaired network, with real clients, and what became of them.

Two steps, run by scripts/faults-net:

  run     inside the impaired network namespace: N uploads of each kind
          (raw HTTP/2 by curl, tus by tuspy and by tus-js-client, all
          unchanged official clients with their own retries), one at a time,
          each bounded in time; one JSON line per upload on stdout.
  verify  on the host, unimpaired: for each upload the platform acknowledged,
          is the catalogue's sha256 the file's (byte-identical)? For each it
          did not, did the client get a clean failure (a problem+json answer
          or a dropped connection) and is the catalogue free of it (no row
          with its title)? Prints and writes the summary rows.
"""
import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request

CLIENTS = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "e2e", "clients")
KINDS = ("raw-http2", "tuspy", "tus-js-client")


def run_one(kind, host, path, title, key, timeout, chunk):
    env = dict(os.environ, API_KEY=key)
    if kind == "raw-http2":
        cmd = ["curl", "--http2-prior-knowledge", "-sS", "-o", "-", "-w", "\n%{http_code} %{content_type}",
               "--max-time", str(timeout), "-H", f"Authorization: Bearer {key}", "-H", "content-type: video/mp4",
               "--data-binary", f"@{path}", f"http://{host}:8082/api/v1/videos?title={title}"]
    elif kind == "tuspy":
        cmd = [sys.executable, os.path.join(CLIENTS, "tuspy_upload.py"), f"http://{host}:8080/api/v1/uploads", path,
               "--store", f"/tmp/tuspy-{title}.json", "--title", title, "--chunk-size", str(chunk), "--retries", "10"]
    else:
        cmd = ["node", os.path.join(CLIENTS, "tus_js_upload.mjs"), f"http://{host}:8080/api/v1/uploads", path,
               "--chunk-size", str(chunk), "--title", title]
    started = time.monotonic()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 5, env=env)
        out, rc = p.stdout, p.returncode
    except subprocess.TimeoutExpired as e:
        out, rc = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or ""), -1
    seconds = round(time.monotonic() - started, 2)
    rec = {"kind": kind, "title": title, "seconds": seconds, "rc": rc}
    if kind == "raw-http2":
        body, _, status_line = out.rpartition("\n")
        status, _, ctype = status_line.partition(" ")
        rec.update(status=int(status) if status.isdigit() else 0, content_type=ctype)
        rec["acknowledged"] = rc == 0 and rec["status"] in (201, 202)
        if rec["acknowledged"]:
            rec["video"] = json.loads(body)["id"]
    else:
        lines = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
        done = [l["done"] for l in lines if "done" in l]
        urls = [l["url"] for l in lines if "url" in l]
        rec["acknowledged"] = rc == 0 and bool(done)
        rec["upload_url"] = (done or urls or [None])[0]
        rec["error"] = next((l["error"] for l in lines if "error" in l), None)
    return rec


def cmd_run(a):
    for i in range(a.runs):
        for kind in KINDS:
            title = f"netfault-{a.label}-{kind}-{i}-{a.run_id}"
            rec = run_one(kind, a.host, a.file, title, a.key, a.timeout, a.chunk)
            print(json.dumps(dict(rec, label=a.label)), flush=True)


def api(base, path, key, method="GET"):
    req = urllib.request.Request(base + path, method=method, headers={"Authorization": f"Bearer {key}", "Tus-Resumable": "1.0.0"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers, r.read()  # case-insensitive lookups
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def catalogue_sha256s(dsn, title):
    # Titles are ours (netfault-<label>-<kind>-<i>-<run id>): no quoting needed.
    out = subprocess.run(["psql", dsn, "-tAc", f"SELECT source_sha256 FROM videos WHERE title = '{title}'"], capture_output=True, text=True, check=True)
    return [l for l in out.stdout.split() if l]


def verify(rec, base, key, sha256, dsn):
    if rec["acknowledged"]:
        video = rec.get("video")
        if not video and rec.get("upload_url"):
            path = "/" + rec["upload_url"].split("/", 3)[3]
            _, headers, _ = api(base, path, key, "HEAD")
            link = headers.get("Link", "")
            video = link.split(">")[0].rsplit("/", 1)[-1] if "rel=\"video\"" in link else None
        status, _, body = api(base, f"/api/v1/videos/{video}", key) if video else (0, {}, b"")
        rec["identical"] = status == 200 and json.loads(body).get("sha256") == sha256
    else:
        rec["identical"] = False
        if rec["kind"] == "raw-http2":
            dropped = rec["status"] == 0
            problem = rec.get("content_type", "").startswith("application/problem+json")
            rec["clean_failure"] = dropped or problem
        # A failure the server completed anyway (the answer was lost) leaves a
        # whole video the client does not know of; anything else is half-written.
        found = catalogue_sha256s(dsn, rec["title"])
        rec["rows_whole"] = sum(s == sha256 for s in found)
        rec["rows_partial"] = sum(s != sha256 for s in found)
    return rec


def cmd_verify(a):
    sha256 = hashlib.sha256(open(a.file, "rb").read()).hexdigest()
    rows = []
    records = [json.loads(l) for l in open(a.results) if l.startswith("{")]
    for label in dict.fromkeys(r["label"] for r in records):
        for kind in KINDS:
            recs = [verify(r, a.base, a.key, sha256, a.dsn) for r in records if r["label"] == label and r["kind"] == kind]
            if not recs:
                continue
            failed = [r for r in recs if not r["acknowledged"]]
            rows.append({
                "impairment": label, "kind": kind, "runs": len(recs),
                "completed": sum(r["acknowledged"] for r in recs) / len(recs),
                "identical": sum(r["identical"] for r in recs) / len(recs),
                "median_seconds": statistics.median(r["seconds"] for r in recs),
                "max_seconds": max(r["seconds"] for r in recs),
                "failures_clean": (sum(r.get("clean_failure", False) for r in failed) if kind == "raw-http2" else None),
                "failures": len(failed),
                "failures_completed_anyway": sum(r["rows_whole"] for r in failed),
                "failures_left_partial_rows": sum(r["rows_partial"] for r in failed),
            })
    report = {"stamp": json.loads(a.stamp), "rows": rows, "uploads": records}
    with open(a.report, "w") as f:
        json.dump(report, f, indent=1)
    print(f"{'impairment':<22} {'client':<14} {'runs':>4} {'done':>6} {'intact':>7} {'median s':>9} {'max s':>7}  failures")
    for r in rows:
        fail = f"{r['failures']}" + (f" ({r['failures_clean']} clean)" if r["failures_clean"] is not None else "")
        fail += f"; stored anyway {r['failures_completed_anyway']}, partial rows {r['failures_left_partial_rows']}"
        print(f"{r['impairment']:<22} {r['kind']:<14} {r['runs']:>4} {r['completed']:>6.0%} {r['identical']:>7.0%} {r['median_seconds']:>9.1f} {r['max_seconds']:>7.1f}  {fail}")
    # The goals: tus byte-identical every time under 5 % loss; HTTP/2 failures
    # clean and never half-written.
    bad = [r for r in rows if r["kind"] != "raw-http2" and r["impairment"] == "loss-5pct" and r["identical"] < 1]
    bad += [r for r in rows if r["failures_left_partial_rows"] > 0 or (r["failures_clean"] is not None and r["failures_clean"] < r["failures"])]
    for r in bad:
        print(f"goal missed: {r['impairment']} {r['kind']}", file=sys.stderr)
    return 1 if bad else 0


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="step", required=True)
    r = sub.add_parser("run")
    r.add_argument("--host", required=True)
    r.add_argument("--file", required=True)
    r.add_argument("--key", required=True)
    r.add_argument("--label", required=True)
    r.add_argument("--run-id", required=True)
    r.add_argument("--runs", type=int, default=3)
    r.add_argument("--timeout", type=int, default=120)
    r.add_argument("--chunk", type=int, default=1 << 20)
    v = sub.add_parser("verify")
    v.add_argument("--results", required=True)
    v.add_argument("--file", required=True)
    v.add_argument("--key", required=True)
    v.add_argument("--base", default="http://127.0.0.1:8080")
    v.add_argument("--dsn", required=True)
    v.add_argument("--report", required=True)
    v.add_argument("--stamp", required=True)
    a = p.parse_args()
    sys.exit(cmd_run(a) if a.step == "run" else cmd_verify(a))


if __name__ == "__main__":
    main()
