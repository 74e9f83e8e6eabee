// The workers' own histogram of job pickup (transcode_job_wait_seconds,
// enqueue → start, labelled by intake mode), read from each worker's /metrics.

import http from 'k6/http';
import { addHistogram } from './counters.js';

export { pickupBetween } from './counters.js';

// { push: {count, sum, buckets}, pull: {...} }, summed over the workers.
export function pickupHistograms(bases) {
  const out = {};
  for (const base of bases) {
    const res = http.get(`${base}/metrics`, { tags: { kind: 'worker-metrics' }, timeout: '5s' });
    if (res.status !== 200) throw new Error(`worker metrics at ${base} answered ${res.status}`);
    addHistogram(out, res.body, 'transcode_job_wait_seconds');
  }
  return out;
}
