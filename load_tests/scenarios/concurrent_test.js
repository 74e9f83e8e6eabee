// Creators upload while viewers watch and the workers transcode: the
// viewers' quality of experience under transcoding load. Uploads alternate
// raw and tus, each checked (size, sha256, ready); viewers are the player
// model on the seeded videos. Compare its player_* figures with a
// streaming_test run of the same VIEWERS to see what transcoding costs viewers.

import crypto from 'k6/crypto';
import { check } from 'k6';
import { Counter, Rate, Trend } from 'k6/metrics';
import { ALT_BASE_URL, BASE_URL, PROFILE, envNumber, requireVideos } from '../lib/config.js';
import { sampleLink, watch } from '../lib/player.js';
import { tusUpload } from '../lib/tus.js';
import { awaitReady, rawUpload } from '../lib/videos.js';
import { summaryFor } from '../lib/summary.js';

if (!__ENV.MEDIA_FILE) throw new Error('MEDIA_FILE is not set: the clip to upload (scripts/load makes one)');
const media = open(__ENV.MEDIA_FILE, 'b');
const sha256 = crypto.sha256(media, 'hex');
const videos = requireVideos(1);
const viewers = envNumber('VIEWERS', PROFILE === 'smoke' ? 3 : 30);
const uploads = envNumber('UPLOADS', PROFILE === 'smoke' ? 2 : 12);
const duration = __ENV.DURATION || (PROFILE === 'smoke' ? '15s' : '3m');
// Under scripts/faults-infra a component is restarted or killed mid-run:
// uploads then arrive at a steady rate (UPLOAD_RATE a minute) across the
// fault, an upload refused during it is a clean failure (not a threshold),
// and only a lost upload (acknowledged, never ready) fails the run.
const faultRun = Boolean(__ENV.FAULT);

const uploadOk = new Rate('upload_ok');
const uploadVerified = new Rate('upload_verified');
const uploadLost = new Counter('upload_lost');
const readySeconds = new Trend('upload_to_ready_seconds');

const creators = faultRun
  ? // gracefulStop: an upload sent near the end is still awaited to ready, not cut off uncounted.
    { executor: 'constant-arrival-rate', rate: envNumber('UPLOAD_RATE', 8), timeUnit: '1m', duration, preAllocatedVUs: 8, maxVUs: 60, exec: 'create', gracefulStop: '6m' }
  : { executor: 'shared-iterations', vus: Math.min(2, uploads), iterations: uploads, exec: 'create', maxDuration: '15m' };
const viewerThresholds = {
  player_request_failed: ['rate==0'],
  player_rebuffer_events: ['count==0'],
  player_segment_ttfb_ms: [`p(99)<${envNumber('TTFB_P99_MS', PROFILE === 'smoke' ? 1000 : 200)}`],
};

export const options = {
  scenarios: {
    creators,
    viewers: { executor: 'constant-vus', vus: viewers, duration, exec: 'view' },
  },
  insecureSkipTLSVerify: true,
  summaryTrendStats: ['avg', 'min', 'med', 'max', 'p(90)', 'p(95)', 'p(99)', 'count'],
  thresholds: Object.assign(
    {
      upload_lost: ['count==0'],
      // A run that played nothing must fail, not pass on empty metrics.
      player_buffered_media_seconds: ['count>0'],
    },
    faultRun ? { upload_ok: ['rate>0'] } : Object.assign({ upload_ok: ['rate==1'], upload_verified: ['rate==1'] }, viewerThresholds),
  ),
};

export function create() {
  const tus = __ITER % 2 === 1;
  const base = __ITER % 4 < 2 ? BASE_URL : ALT_BASE_URL;
  const kind = tus ? 'tus' : 'raw';
  const r = tus
    ? tusUpload(base, media, { filename: `k6-concurrent-${__VU}-${__ITER}.mp4`, filetype: 'video/mp4' }, 1 << 20, { kind }, false)
    : rawUpload(base, media, `k6 concurrent ${__VU}-${__ITER}`, 'video/mp4', { kind });
  uploadOk.add(r.ok, { kind });
  if (!check(r, { [`${kind} upload accepted`]: (x) => x.ok })) {
    console.error(`${kind} upload: ${r.error}`);
    uploadVerified.add(false, { kind });
    return;
  }
  const ready = awaitReady(base, r.video, media.byteLength, sha256, envNumber('READY_TIMEOUT_S', 180), { kind });
  uploadVerified.add(ready.ok, { kind });
  // Acknowledged, then never ready with the bytes that were sent: lost.
  if (!ready.ok) uploadLost.add(1, { kind });
  else uploadLost.add(0, { kind });
  if (check(ready, { [`${kind} upload stored intact and ready`]: (x) => x.ok })) readySeconds.add(ready.readyMs / 1000, { kind });
  else console.error(`${kind} video ${r.video}: ${ready.error}`);
}

export function view() {
  const id = videos[Math.floor(Math.random() * videos.length)];
  watch(`${BASE_URL}/hls/${id}/master.m3u8`, PROFILE === 'smoke' ? 10 : 60, sampleLink(), {});
}

export const handleSummary = summaryFor('concurrent_test');
