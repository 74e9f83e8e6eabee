// The edges' own count of viewer requests by cache outcome
// (edge_requests_total{cache}), summed over every edge in EDGE_METRICS.

import http from 'k6/http';
import { EDGE_METRICS } from './config.js';

// { hit, miss, stale, pass, ... } summed over the edges; throws when an edge does not answer.
export function edgeCounts() {
  const sums = {};
  for (const base of EDGE_METRICS) {
    const res = http.get(`${base}/metrics`, { tags: { kind: 'edge-metrics' }, timeout: '5s' });
    if (res.status !== 200) throw new Error(`edge metrics at ${base} answered ${res.status}`);
    for (const line of res.body.split('\n')) {
      const m = line.match(/^edge_requests_total\{[^}]*cache="([a-z]+)"[^}]*\}\s+([0-9.e+]+)/);
      if (m) sums[m[1]] = (sums[m[1]] || 0) + Number(m[2]);
    }
  }
  return sums;
}

// What the edges answered between two snapshots. `ratio`: from cache (hit,
// or stale served while revalidating) over the cacheable requests (those
// and misses); `share_of_all` also counts `pass`, the requests no edge may
// cache (each viewer's own master playlist, content keys).
export function hitRatio(before, after) {
  const delta = (k) => (after[k] || 0) - (before[k] || 0);
  const fromCache = delta('hit') + delta('stale');
  const cacheable = fromCache + delta('miss');
  let all = 0;
  for (const k of Object.keys(after)) all += delta(k);
  return {
    fromCache,
    cacheable,
    all,
    ratio: cacheable > 0 ? fromCache / cacheable : 0,
    shareOfAll: all > 0 ? fromCache / all : 0,
  };
}
