// Distant viewers, with and without an edge near them. Two groups of
// player-model viewers watch the same seeded videos at the same time:
// - far:  every request crosses the distance to the platform's front door
//         (FAR_URL: a relay that delays each direction by DISTANCE_MS);
// - near: requests go to an edge beside the viewer (NEAR_URL), whose origin
//         is that same far front door, so only its misses cross the distance.
// scripts/load distant starts the relay and the near edge (with an empty
// cache: its first viewer of each object pays the miss) and stops them after.
// Steering is not followed: each viewer stays on the path it was given.

import { PROFILE, envNumber, requireVideos } from '../lib/config.js';
import { sampleLink, watch } from '../lib/player.js';
import { summaryFor } from '../lib/summary.js';

const FAR_URL = (__ENV.FAR_URL || '').replace(/\/+$/, '');
const NEAR_URL = (__ENV.NEAR_URL || '').replace(/\/+$/, '');
if (!FAR_URL || !NEAR_URL) throw new Error('FAR_URL and NEAR_URL must be set (scripts/load distant starts both)');
const distanceMs = envNumber('DISTANCE_MS', 75);
const videos = requireVideos(1);
const viewers = envNumber('VIEWERS', PROFILE === 'smoke' ? 2 : 5);
const duration = PROFILE === 'smoke' ? '15s' : '3m';
const watchSeconds = PROFILE === 'smoke' ? 10 : 60;

export const options = {
  scenarios: {
    far: { executor: 'constant-vus', vus: viewers, duration, exec: 'far', tags: { path: 'far' } },
    near: { executor: 'constant-vus', vus: viewers, duration, exec: 'near', tags: { path: 'near' } },
  },
  summaryTrendStats: ['avg', 'min', 'med', 'max', 'p(90)', 'p(95)', 'p(99)', 'count'],
  thresholds: {
    player_request_failed: ['rate==0'],
    'player_buffered_media_seconds{path:far}': ['count>0'],
    'player_buffered_media_seconds{path:near}': ['count>0'],
    // The distance is really there: a far segment waits at least one round trip.
    'player_segment_ttfb_ms{path:far}': [`p(50)>=${2 * distanceMs}`],
    // (k6 keeps a submetric in the summary only when it has a threshold;
    // these are the figures the report reads, each with a bound that holds
    // only when the near edge does its job.)
    'player_segment_ttfb_ms{path:near}': [`p(50)<${2 * distanceMs}`],
    'player_startup_ms{path:far}': ['p(95)<10000'],
    'player_startup_ms{path:near}': ['p(95)<5000'],
    'player_segment_cache_hit{path:near}': ['rate>0'],
  },
};

function pick() {
  return videos[Math.floor(Math.random() * videos.length)];
}

export function far() {
  watch(`${FAR_URL}/hls/${pick()}/master.m3u8`, watchSeconds, sampleLink(), { path: 'far' }, { steering: false });
}

export function near() {
  watch(`${NEAR_URL}/hls/${pick()}/master.m3u8`, watchSeconds, sampleLink(), { path: 'near' }, { steering: false });
}

export const handleSummary = summaryFor('distant_test');
