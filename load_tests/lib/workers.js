// The workers' own histogram of job pickup (transcode_job_wait_seconds,
// enqueue → start, labelled by intake mode), read from each worker's
// /metrics, and what changed between two readings.

import http from 'k6/http';

// { push: {count, sum, buckets: [[le, cumulative], ...]}, pull: {...} }, summed over the workers.
export function pickupHistograms(bases) {
  const out = {};
  for (const base of bases) {
    const res = http.get(`${base}/metrics`, { tags: { kind: 'worker-metrics' }, timeout: '5s' });
    if (res.status !== 200) throw new Error(`worker metrics at ${base} answered ${res.status}`);
    for (const line of res.body.split('\n')) {
      const m = line.match(/^transcode_job_wait_seconds_(bucket|sum|count)\{([^}]*)\}\s+([0-9.e+-]+)/);
      if (!m) continue;
      const labels = Object.fromEntries([...m[2].matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
      const h = (out[labels.mode] = out[labels.mode] || { count: 0, sum: 0, buckets: {} });
      const v = Number(m[3]);
      if (m[1] === 'count') h.count += v;
      else if (m[1] === 'sum') h.sum += v;
      else h.buckets[labels.le] = (h.buckets[labels.le] || 0) + v;
    }
  }
  return out;
}

// The jobs picked up between two readings, per mode: count, mean, and
// p50/p99 interpolated within the histogram's buckets (so no finer than them).
export function pickupBetween(before, after) {
  const out = {};
  for (const [mode, a] of Object.entries(after)) {
    const b = before[mode] || { count: 0, sum: 0, buckets: {} };
    const count = a.count - b.count;
    if (count <= 0) {
      out[mode] = { count: 0 };
      continue;
    }
    const bounds = Object.keys(a.buckets).filter((le) => le !== '+Inf').map(Number).sort((x, y) => x - y);
    const cum = bounds.map((le) => {
      const key = Object.keys(a.buckets).find((k) => Number(k) === le);
      return a.buckets[key] - (b.buckets[key] || 0);
    });
    const quantile = (q) => {
      const rank = q * count;
      let prevLe = 0;
      let prevCum = 0;
      for (let i = 0; i < bounds.length; i++) {
        if (cum[i] >= rank) {
          const inBucket = cum[i] - prevCum;
          return prevLe + (bounds[i] - prevLe) * (inBucket > 0 ? (rank - prevCum) / inBucket : 0);
        }
        prevLe = bounds[i];
        prevCum = cum[i];
      }
      return bounds[bounds.length - 1];
    };
    out[mode] = { count, mean: (a.sum - b.sum) / count, p50: quantile(0.5), p99: quantile(0.99) };
  }
  return out;
}
