// Edge caching under Zipf popularity: viewers choose among the seeded
// videos (≥ 50 in the full profile) with probability ∝ 1/rank^ZIPF_S. A
// Zipf warm-up in setup() fills the edges as earlier viewers would; the hit
// ratio of the measured phase is then read from the edges' own
// edge_requests_total{cache} (EDGE_METRICS), before and after, and must be ≥ 0.95.

import http from 'k6/http';
import { Gauge } from 'k6/metrics';
import { BASE_URL, EDGE_METRICS, PROFILE, envNumber, requireVideos } from '../lib/config.js';
import { edgeCounts, hitRatio } from '../lib/edges.js';
import { parseMaster, parseMedia } from '../lib/hls.js';
import { sampleLink, watch } from '../lib/player.js';
import { summaryFor } from '../lib/summary.js';

const videos = requireVideos(PROFILE === 'smoke' ? 2 : 50);
if (EDGE_METRICS.length === 0) throw new Error('EDGE_METRICS is not set: the edges whose edge_requests_total is read');
const s = envNumber('ZIPF_S', 1.0);
const viewers = envNumber('VIEWERS', PROFILE === 'smoke' ? 4 : 40);
const warmupViews = envNumber('WARMUP_VIEWS', PROFILE === 'smoke' ? 10 : 300);
const minRatio = envNumber('MIN_HIT_RATIO', 0.95);

// Cumulative Zipf weights over ranks 1..n.
const cumulative = (() => {
  const w = videos.map((_, i) => 1 / Math.pow(i + 1, s));
  const total = w.reduce((a, b) => a + b, 0);
  let acc = 0;
  return w.map((x) => (acc += x / total));
})();

function zipfPick() {
  const r = Math.random();
  const i = cumulative.findIndex((c) => r <= c);
  return videos[i < 0 ? videos.length - 1 : i];
}

const hitRatioGauge = new Gauge('edge_cache_hit_ratio');
const hitShareGauge = new Gauge('edge_cache_hit_share_of_all');
const measuredRequests = new Gauge('edge_requests_measured');

export const options = {
  scenarios: {
    viewers: {
      executor: 'ramping-vus',
      startVUs: 0,
      stages: PROFILE === 'smoke' ? [{ duration: '2s', target: viewers }, { duration: '8s', target: viewers }] : [{ duration: '20s', target: viewers }, { duration: '2m', target: viewers }],
      gracefulRampDown: '15s',
      exec: 'view',
    },
  },
  setupTimeout: '10m',
  insecureSkipTLSVerify: true,
  thresholds: {
    edge_cache_hit_ratio: [`value>=${minRatio}`],
    player_request_failed: ['rate==0'],
    // A run that played nothing must fail, not pass on empty metrics.
    player_buffered_media_seconds: ['count>0'],
  },
};

// One fast pass over a video, every rung on every pathway, as the viewers
// before this run would have left the edges.
function warmOne(id) {
  const url = `${BASE_URL}/hls/${id}/master.m3u8`;
  const master = parseMaster(http.get(url, { tags: { kind: 'warmup' } }).body, url);
  for (const rung of master.variants) {
    const media = parseMedia(http.get(rung.url, { tags: { kind: 'warmup' } }).body, rung.url);
    const objects = (media.init ? [media.init] : []).concat(media.segments.map((x) => x.url));
    http.batch(objects.map((o) => ['GET', o, null, { tags: { kind: 'warmup' }, responseType: 'none' }]));
  }
}

export function setup() {
  for (let i = 0; i < warmupViews; i++) warmOne(zipfPick());
  return { before: edgeCounts() };
}

export function view() {
  watch(`${BASE_URL}/hls/${zipfPick()}/master.m3u8`, PROFILE === 'smoke' ? 8 : 30, sampleLink(), {});
}

export function teardown(data) {
  const r = hitRatio(data.before, edgeCounts());
  hitRatioGauge.add(r.ratio);
  hitShareGauge.add(r.shareOfAll);
  measuredRequests.add(r.all);
  console.log(
    `edge cache: ${r.fromCache} from cache of ${r.cacheable} cacheable requests = ${r.ratio.toFixed(4)}; ` +
      `${r.shareOfAll.toFixed(4)} of all ${r.all} (edge_requests_total over ${EDGE_METRICS.length} edges)`,
  );
}

export const handleSummary = summaryFor('cache_test');
