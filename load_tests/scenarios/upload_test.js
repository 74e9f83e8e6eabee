// Uploads through both front doors, both ways: raw HTTP/2 streaming
// uploads (POST /api/v1/videos; HTTP/2 over TLS when BASE_URL is https)
// and tus uploads (create, PATCH in chunks, one injected error resumed by
// HEAD). Every upload is checked: the catalogue reports the size and sha256
// that were sent, and the video reaches `ready`.
//
//   MEDIA_FILE   the clip to upload (scripts/load makes one with ffmpeg lavfi)
//   TUS_CHUNK    bytes per PATCH (default 1 MiB)
//   UPLOAD_VUS, UPLOAD_ITERATIONS   shape of the load (per upload kind)

import crypto from 'k6/crypto';
import { check } from 'k6';
import { Counter, Rate, Trend } from 'k6/metrics';
import { ALT_BASE_URL, BASE_URL, PROFILE, envNumber } from '../lib/config.js';
import { tusUpload } from '../lib/tus.js';
import { awaitReady, rawUpload } from '../lib/videos.js';
import { summaryFor } from '../lib/summary.js';

if (!__ENV.MEDIA_FILE) throw new Error('MEDIA_FILE is not set: the clip to upload (scripts/load makes one)');
const media = open(__ENV.MEDIA_FILE, 'b');
const sha256 = crypto.sha256(media, 'hex');
const chunk = envNumber('TUS_CHUNK', 1 << 20);
const vus = envNumber('UPLOAD_VUS', PROFILE === 'smoke' ? 1 : 4);
const iterations = envNumber('UPLOAD_ITERATIONS', PROFILE === 'smoke' ? 2 : 20);
const readyTimeout = envNumber('READY_TIMEOUT_S', 180);

const uploadOk = new Rate('upload_ok');
const uploadVerified = new Rate('upload_verified');
const uploadSeconds = new Trend('upload_seconds');
const uploadMbps = new Trend('upload_mbps');
const readySeconds = new Trend('upload_to_ready_seconds');
const tusResumes = new Counter('tus_resumes');

export const options = {
  scenarios: {
    raw: { executor: 'shared-iterations', vus, iterations, exec: 'raw', maxDuration: '20m' },
    tus: { executor: 'shared-iterations', vus, iterations, exec: 'tus', maxDuration: '20m' },
  },
  insecureSkipTLSVerify: true, // the native stack's certificate is self-signed
  thresholds: {
    upload_ok: ['rate==1'],
    upload_verified: ['rate==1'],
    'upload_ok{kind:raw}': ['rate==1'],
    'upload_ok{kind:tus}': ['rate==1'],
    // Each kind really uploaded (and k6 keeps these per-kind figures in the summary for the report).
    'upload_mbps{kind:raw}': ['avg>0'],
    'upload_mbps{kind:tus}': ['avg>0'],
    'upload_to_ready_seconds{kind:raw}': [`max<${readyTimeout}`],
    'upload_to_ready_seconds{kind:tus}': [`max<${readyTimeout}`],
    checks: ['rate==1'],
  },
};

// Alternate front doors so both carry both kinds.
function door() {
  return __ITER % 2 === 0 ? BASE_URL : ALT_BASE_URL;
}

function finish(kind, result, started) {
  const tags = { kind };
  const secs = (Date.now() - started) / 1000;
  uploadOk.add(result.ok, tags);
  check(result, { [`${kind} upload accepted`]: (r) => r.ok }) || console.error(`${kind} upload: ${result.error}`);
  if (!result.ok) {
    uploadVerified.add(false, tags);
    return;
  }
  uploadSeconds.add(secs, tags);
  uploadMbps.add((media.byteLength * 8) / 1e6 / secs, tags);
  const ready = awaitReady(door(), result.video, media.byteLength, sha256, readyTimeout, tags);
  uploadVerified.add(ready.ok, tags);
  check(ready, { [`${kind} upload stored intact and ready`]: (r) => r.ok }) || console.error(`${kind} video ${result.video}: ${ready.error}`);
  if (ready.ok) readySeconds.add(ready.readyMs / 1000, tags);
}

export function raw() {
  const started = Date.now();
  finish('raw', rawUpload(door(), media, `k6 raw ${__VU}-${__ITER}`, 'video/mp4', { kind: 'raw' }), started);
}

export function tus() {
  const started = Date.now();
  const r = tusUpload(door(), media, { filename: `k6-tus-${__VU}-${__ITER}.mp4`, filetype: 'video/mp4' }, chunk, { kind: 'tus' }, true);
  if (r.resumes) tusResumes.add(r.resumes);
  finish('tus', r, started);
}

export const handleSummary = summaryFor('upload_test');
