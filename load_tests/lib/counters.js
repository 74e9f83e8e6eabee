// Pure arithmetic on the services' Prometheus counters and histograms, kept
// apart from k6's http so that node's test runner can check it
// (load_tests/test/, part of the unit tier).

// Every sample of `series` (a metric name, or a regex source matching one
// with a capture group) as [labels, value, groups...].
function* samples(text, series) {
  const re = new RegExp(`^${series}\\{([^}]*)\\}\\s+([0-9.e+-]+)`);
  for (const line of text.split('\n')) {
    const m = line.match(re);
    if (!m) continue;
    const rest = m.slice(1);
    const [labelText, value] = rest.slice(-2);
    const labels = Object.fromEntries([...labelText.matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    yield [labels, Number(value), ...rest.slice(0, -2)];
  }
}

// Sums `name{...label="x"...} value` lines by the value of `label`.
export function sumByLabel(text, name, label) {
  const sums = {};
  for (const [labels, v] of samples(text, name)) {
    if (labels[label] !== undefined) sums[labels[label]] = (sums[labels[label]] || 0) + v;
  }
  return sums;
}

// Adds a histogram's _bucket, _sum and _count lines, by `mode`, into `out`:
// { push: {count, sum, buckets: {le: cumulative}}, ... }.
export function addHistogram(out, text, name) {
  for (const [labels, v, part] of samples(text, `${name}_(bucket|sum|count)`)) {
    const h = (out[labels.mode] = out[labels.mode] || { count: 0, sum: 0, buckets: {} });
    if (part === 'count') h.count += v;
    else if (part === 'sum') h.sum += v;
    else h.buckets[labels.le] = (h.buckets[labels.le] || 0) + v;
  }
  return out;
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
