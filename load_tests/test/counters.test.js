// The arithmetic the scenarios' verdicts rest on: hit ratios from the
// edges' counters and pickup quantiles from the workers' histograms.
import test from 'node:test';
import assert from 'node:assert/strict';
import { addHistogram, hitRatio, pickupBetween, sumByLabel } from '../lib/counters.js';

const edge = (hit, miss, pass) => `# HELP edge_requests_total x
edge_requests_total{cache="hit",service="cdn-edge",node="edge-1"} ${hit}
edge_requests_total{cache="miss",service="cdn-edge",node="edge-1"} ${miss}
edge_requests_total{cache="pass",service="cdn-edge",node="edge-1"} ${pass}
edge_ttfb_seconds_count{cache="hit"} 99`;

test('counters are summed by label and other series are ignored', () => {
  assert.deepEqual(sumByLabel(edge(5, 2, 1), 'edge_requests_total', 'cache'), { hit: 5, miss: 2, pass: 1 });
});

test('the hit ratio counts only what happened between the snapshots, pass apart', () => {
  const before = sumByLabel(edge(100, 50, 10), 'edge_requests_total', 'cache');
  const after = sumByLabel(edge(190, 60, 30), 'edge_requests_total', 'cache');
  const r = hitRatio(before, after);
  assert.equal(r.cacheable, 100);
  assert.equal(r.ratio, 0.9);
  assert.equal(r.all, 120);
  assert.equal(r.shareOfAll, 90 / 120);
});

test('a stale answer is an answer from cache; no requests is a ratio of 0, not NaN', () => {
  assert.equal(hitRatio({}, { stale: 1, miss: 1 }).ratio, 0.5);
  assert.equal(hitRatio({ hit: 3 }, { hit: 3 }).ratio, 0);
});

const hist = (mode, b005, b01, b1, inf, sum) => `transcode_job_wait_seconds_bucket{mode="${mode}",le="0.005"} ${b005}
transcode_job_wait_seconds_bucket{mode="${mode}",le="0.01"} ${b01}
transcode_job_wait_seconds_bucket{mode="${mode}",le="1"} ${b1}
transcode_job_wait_seconds_bucket{mode="${mode}",le="+Inf"} ${inf}
transcode_job_wait_seconds_sum{mode="${mode}"} ${sum}
transcode_job_wait_seconds_count{mode="${mode}"} ${inf}`;

test('pickup quantiles interpolate within the buckets of the jobs between two readings', () => {
  const before = addHistogram({}, hist('push', 10, 10, 10, 10, 0.03), 'transcode_job_wait_seconds');
  // Ten more jobs: all between 5 and 10 ms.
  const after = addHistogram({}, hist('push', 10, 20, 20, 20, 0.105), 'transcode_job_wait_seconds');
  const r = pickupBetween(before, after).push;
  assert.equal(r.count, 10);
  assert.ok(Math.abs(r.mean - 0.0075) < 1e-9);
  assert.ok(Math.abs(r.p50 - 0.0075) < 1e-9, `p50 ${r.p50}`);
  assert.ok(r.p99 > 0.0099 && r.p99 <= 0.01, `p99 ${r.p99}`);
});

test('a mode with no new jobs reports a count of 0 and no quantiles', () => {
  const h = addHistogram({}, hist('pull', 1, 1, 1, 1, 0.001), 'transcode_job_wait_seconds');
  assert.deepEqual(pickupBetween(h, h).pull, { count: 0 });
});
