// Job pickup, push against pull, as the workers themselves measure it:
// uploads arrive at a steady rate (UPLOAD_RATE per minute), each is awaited
// to ready, and the workers' transcode_job_wait_seconds (enqueue → start,
// labelled push or pull) is read from WORKER_METRICS before and after.
// In the native stack one push and one pull worker share the queue.

import crypto from 'k6/crypto';
import { check } from 'k6';
import { Gauge, Rate, Trend } from 'k6/metrics';
import { BASE_URL, PROFILE, envNumber } from '../lib/config.js';
import { awaitReady, rawUpload } from '../lib/videos.js';
import { pickupBetween, pickupHistograms } from '../lib/workers.js';
import { summaryFor } from '../lib/summary.js';

const clip = __ENV.WORKER_MEDIA_FILE || __ENV.MEDIA_FILE;
if (!clip) throw new Error('WORKER_MEDIA_FILE (or MEDIA_FILE) is not set: the clip to upload (scripts/load makes one)');
const workers = (__ENV.WORKER_METRICS || '').split(',').filter(Boolean);
if (workers.length === 0) throw new Error('WORKER_METRICS is not set: the workers whose transcode_job_wait_seconds is read');
const media = open(clip, 'b');
const sha256 = crypto.sha256(media, 'hex');

const verified = new Rate('upload_verified');
// Job latency as a creator sees it: upload acknowledged → ready (pickup, transcode, commit).
const readySeconds = new Trend('upload_to_ready_seconds');
const jobs = new Gauge('worker_jobs_picked');
// One set per intake mode (k6 metrics are declared before the run).
const gauges = Object.fromEntries(
  ['push', 'pull'].map((mode) => [
    mode,
    {
      jobs: new Gauge(`worker_${mode}_jobs`),
      mean: new Gauge(`worker_${mode}_pickup_mean_seconds`),
      p50: new Gauge(`worker_${mode}_pickup_p50_seconds`),
      p99: new Gauge(`worker_${mode}_pickup_p99_seconds`),
    },
  ]),
);

export const options = {
  scenarios: {
    creators: {
      executor: 'constant-arrival-rate',
      // One upload every 5 s: a single worker finishes a short clip well before the next.
      rate: envNumber('UPLOAD_RATE', PROFILE === 'smoke' ? 6 : 12),
      timeUnit: '1m',
      duration: __ENV.DURATION || (PROFILE === 'smoke' ? '20s' : '3m'),
      preAllocatedVUs: 4,
      maxVUs: 20,
      exec: 'create',
    },
  },
  teardownTimeout: '2m',
  thresholds: {
    upload_verified: ['rate==1'],
    worker_jobs_picked: ['value>0'],
  },
};

export function setup() {
  return { before: pickupHistograms(workers) };
}

export function create() {
  const r = rawUpload(BASE_URL, media, `k6 worker ${__VU}-${__ITER}`, 'video/mp4', {});
  const ready = r.ok ? awaitReady(BASE_URL, r.video, media.byteLength, sha256, envNumber('READY_TIMEOUT_S', 180), {}) : r;
  verified.add(ready.ok);
  if (ready.ok) readySeconds.add(ready.readyMs / 1000);
  check(ready, { 'upload transcoded': (x) => x.ok }) || console.error(`worker_test upload: ${ready.error}`);
}

export function teardown(data) {
  const between = pickupBetween(data.before, pickupHistograms(workers));
  let total = 0;
  for (const [mode, s] of Object.entries(between)) {
    total += s.count;
    const g = gauges[mode];
    if (s.count === 0 || !g) continue;
    g.jobs.add(s.count);
    g.mean.add(s.mean);
    g.p50.add(s.p50);
    g.p99.add(s.p99);
    console.log(`pickup ${mode}: ${s.count} jobs, mean ${(s.mean * 1000).toFixed(1)} ms, p50 ~${(s.p50 * 1000).toFixed(1)} ms, p99 ~${(s.p99 * 1000).toFixed(1)} ms (within histogram buckets)`);
  }
  jobs.add(total);
}

export const handleSummary = summaryFor('worker_test');
