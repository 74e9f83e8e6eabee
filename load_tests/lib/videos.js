// The video API as the scenarios use it: a raw (HTTP/2 streaming) upload,
// and waiting, bounded, for a video to reach `ready` while checking that
// the catalogue holds the bytes that were sent.

import http from 'k6/http';
import { sleep } from 'k6';
import { authHeaders } from './config.js';

// One POST /api/v1/videos with the whole body. Returns { ok, video, status, error }.
export function rawUpload(base, data, title, contentType, tags) {
  const res = http.post(`${base}/api/v1/videos?title=${encodeURIComponent(title)}`, data, {
    headers: authHeaders({ 'Content-Type': contentType }),
    tags: Object.assign({ step: 'raw-upload' }, tags),
    timeout: '300s',
  });
  if (res.status !== 201 && res.status !== 202) return { ok: false, status: res.status, error: `upload answered ${res.status}: ${res.body}` };
  return { ok: true, status: res.status, video: res.json('id') };
}

// Polls the video until it is ready (or failed, or `timeoutS` passed) and
// checks size and sha256 against what was sent. Returns { ok, readyMs, error }.
export function awaitReady(base, id, size, sha256, timeoutS, tags) {
  const started = Date.now();
  let checked = false;
  let lastDown = null; // the last answer of a poll that found the API down
  while (Date.now() - started < timeoutS * 1000) {
    const res = http.get(`${base}/api/v1/videos/${id}`, { headers: authHeaders(), tags: Object.assign({ step: 'poll' }, tags), timeout: '10s' });
    // A poll that finds the API down (a restart under scripts/faults-infra)
    // says nothing about the video: ask again. A 4xx is an answer.
    if (res.status === 0 || res.status >= 500) {
      lastDown = res.status === 0 ? `no answer (${res.error})` : `${res.status}`;
      sleep(1);
      continue;
    }
    if (res.status !== 200) return { ok: false, error: `GET video answered ${res.status}` };
    const v = res.json();
    if (!checked) {
      if (v.size !== size || v.sha256 !== sha256) return { ok: false, error: `catalogue has ${v.size} bytes sha256 ${v.sha256}; sent ${size} bytes sha256 ${sha256}` };
      checked = true;
    }
    if (v.status === 'ready') return { ok: true, readyMs: Date.now() - started };
    if (v.status === 'failed') return { ok: false, error: `transcode failed: ${v.error}` };
    sleep(0.5);
  }
  return { ok: false, error: `not ready after ${timeoutS} s${lastDown ? `; the last poll that failed got ${lastDown}` : ''}` };
}
