// A tus 1.0 client for k6 (creation, PATCH in chunks, HEAD and resume),
// as tus-js-client and tuspy behave: after a failed PATCH it asks the
// server for the offset (HEAD) and goes on from there.

import http from 'k6/http';
import encoding from 'k6/encoding';
import { sleep } from 'k6';
import { authHeaders } from './config.js';

const TUS = { 'Tus-Resumable': '1.0.0' };

function metadata(fields) {
  return Object.entries(fields)
    .map(([k, v]) => `${k} ${encoding.b64encode(v)}`)
    .join(',');
}

// Uploads `data` (ArrayBuffer) in `chunk`-byte PATCHes. `injectError`
// sends one PATCH at a wrong offset after the first chunk, so every run
// exercises the resume path (409, HEAD, continue). Returns
// { ok, video, resumes, error }.
export function tusUpload(base, data, fields, chunk, tags, injectError) {
  const create = http.post(`${base}/api/v1/uploads`, null, {
    headers: authHeaders(Object.assign({ 'Upload-Length': String(data.byteLength), 'Upload-Metadata': metadata(fields) }, TUS)),
    tags: Object.assign({ step: 'tus-create' }, tags),
  });
  if (create.status !== 201) return { ok: false, error: `create answered ${create.status}: ${create.body}` };
  const loc = create.headers.Location;
  const url = loc.startsWith('http') ? loc : base + loc;
  let offset = 0;
  let resumes = 0;
  let injected = !injectError;
  let failures = 0;
  let last = create;
  while (offset < data.byteLength) {
    let sendAt = offset;
    if (!injected && offset > 0) {
      injected = true;
      sendAt = offset + 1; // the server must refuse this and keep the upload intact
    }
    const end = Math.min(sendAt + chunk, data.byteLength);
    const res = http.patch(url, data.slice(sendAt, end), {
      headers: authHeaders(Object.assign({ 'Content-Type': 'application/offset+octet-stream', 'Upload-Offset': String(sendAt) }, TUS)),
      tags: Object.assign({ step: 'tus-patch' }, tags),
      timeout: '120s',
    });
    last = res;
    if (res.status === 204) {
      offset = Number(res.headers['Upload-Offset']);
      continue;
    }
    // Resume as the real clients do: ask where the server is, go on from there.
    if (++failures > 5) return { ok: false, resumes, error: `PATCH failed ${failures} times, last ${res.status}: ${res.body}` };
    resumes++;
    sleep(0.2 * failures);
    const head = http.request('HEAD', url, null, { headers: authHeaders(TUS), tags: Object.assign({ step: 'tus-head' }, tags) });
    if (head.status !== 200) return { ok: false, resumes, error: `HEAD answered ${head.status}` };
    offset = Number(head.headers['Upload-Offset']);
  }
  const link = last.headers.Link || '';
  const m = link.match(/<([^>]+)>;\s*rel="video"/);
  if (!m) return { ok: false, resumes, error: `the last PATCH named no video (Link: ${link})` };
  return { ok: true, video: m[1].split('/').pop(), resumes };
}
