// Viewers, modelled as players (lib/player.js): each virtual viewer picks a
// ready video, a simulated link from the distribution, and watches through
// the front door and the edges. Profiles:
//   smoke   a handful of viewers for seconds (part of the README's test command)
//   steady  ramp to VIEWERS viewers and hold
//   spike   from VIEWERS/10 to VIEWERS in 10 s, hold, drop
//   soak    VIEWERS for SOAK_DURATION (default 30m)
//   capacity  VIEWERS in 15 s, held for HOLD (default 45s): one step of
//           scripts/capacity's search (STEERING=off for a target that has none)
// Thresholds: no failed request after the player's retries, no rebuffering,
// p99 segment TTFB under TTFB_P99_MS (200 ms; smoke allows 1000 ms, as CI
// runs debug builds on two shared cores).

import { BASE_URL, PROFILE, envNumber, requireVideos } from '../lib/config.js';
import { sampleLink, watch } from '../lib/player.js';
import { summaryFor } from '../lib/summary.js';

const videos = requireVideos(1);
const viewers = envNumber('VIEWERS', PROFILE === 'smoke' ? 4 : 50);
const viewSeconds = envNumber('VIEW_SECONDS', PROFILE === 'smoke' ? 10 : 60);
const ttfbP99 = envNumber('TTFB_P99_MS', PROFILE === 'smoke' ? 1000 : 200);

function stagesFor(profile) {
  switch (profile) {
    case 'smoke':
      return [{ duration: '2s', target: viewers }, { duration: '10s', target: viewers }];
    case 'steady':
    case 'full':
      return [{ duration: '30s', target: viewers }, { duration: '2m', target: viewers }, { duration: '10s', target: 0 }];
    case 'spike':
      return [{ duration: '20s', target: Math.max(1, Math.round(viewers / 10)) }, { duration: '10s', target: viewers }, { duration: '1m', target: viewers }, { duration: '10s', target: 0 }];
    case 'capacity':
      return [{ duration: '15s', target: viewers }, { duration: __ENV.HOLD || '45s', target: viewers }];
    case 'soak':
      return [{ duration: '1m', target: viewers }, { duration: __ENV.SOAK_DURATION || '30m', target: viewers }, { duration: '10s', target: 0 }];
    default:
      throw new Error(`unknown profile ${profile}: smoke, steady, spike, soak, capacity or full`);
  }
}

export const options = {
  scenarios: {
    viewers: { executor: 'ramping-vus', startVUs: 0, stages: stagesFor(PROFILE), gracefulRampDown: '15s', exec: 'view' },
  },
  insecureSkipTLSVerify: true,
  summaryTrendStats: ['avg', 'min', 'med', 'max', 'p(90)', 'p(95)', 'p(99)', 'count'],
  // A capacity step holds exactly when the capacity definition does (no
  // failed request, no rebuffer, p99 segment TTFB ≤ TTFB_P99_MS); the other
  // profiles also bound startup.
  thresholds: Object.assign(
    {
      player_request_failed: ['rate==0'],
      // A run that played nothing must fail, not pass on empty metrics.
      player_buffered_media_seconds: ['count>0'],
      player_rebuffer_events: ['count==0'],
      player_segment_ttfb_ms: [`p(99)<=${ttfbP99}`],
    },
    PROFILE === 'capacity' ? {} : { player_startup_ms: ['p(95)<5000'] },
  ),
};

export function view() {
  const id = videos[Math.floor(Math.random() * videos.length)];
  watch(`${BASE_URL}/hls/${id}/master.m3u8`, viewSeconds, sampleLink(), {}, { steering: __ENV.STEERING !== 'off' });
}

export const handleSummary = summaryFor('streaming_test');
