// The edges' own count of viewer requests by cache outcome
// (edge_requests_total{cache}), summed over every edge in EDGE_METRICS.

import http from 'k6/http';
import { EDGE_METRICS } from './config.js';
import { sumByLabel } from './counters.js';

export { hitRatio } from './counters.js';

// { hit, miss, stale, pass, ... } summed over the edges; throws when an edge does not answer.
export function edgeCounts() {
  const sums = {};
  for (const base of EDGE_METRICS) {
    const res = http.get(`${base}/metrics`, { tags: { kind: 'edge-metrics' }, timeout: '5s' });
    if (res.status !== 200) throw new Error(`edge metrics at ${base} answered ${res.status}`);
    for (const [k, v] of Object.entries(sumByLabel(res.body, 'edge_requests_total', 'cache'))) sums[k] = (sums[k] || 0) + v;
  }
  return sums;
}
