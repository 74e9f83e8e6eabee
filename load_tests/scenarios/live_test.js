// Live viewers: each virtual viewer follows one live stream the LL-HLS way,
// through the front door and the edges: it loads the master and a media
// playlist, then, for as long as it watches, asks for the next part with a
// blocking reload (_HLS_msn/_HLS_part of the preload hint), and downloads
// that part once the playlist lists it. Every viewer of the stream waits on
// the same (msn, part) at the same time, which is what the edges coalesce.
//   LIVE_MASTER_URL  the stream's master playlist (scripts/load live makes one)
// Profiles:
//   smoke   VIEWERS (4) for VIEW_SECONDS (10)
//   steady  ramp to VIEWERS (200) in 20 s and hold VIEW_SECONDS (60)
// Thresholds: no failed request, and every blocking reload answered with
// the part it asked for.

import http from 'k6/http';
import { check } from 'k6';
import { Counter, Rate, Trend } from 'k6/metrics';
import { PROFILE, envNumber } from '../lib/config.js';
import { summaryFor } from '../lib/summary.js';

const master = __ENV.LIVE_MASTER_URL || '';
if (!master) throw new Error('LIVE_MASTER_URL is required: the master playlist of a live stream on air');
const viewers = envNumber('VIEWERS', PROFILE === 'smoke' ? 4 : 200);
const viewSeconds = envNumber('VIEW_SECONDS', PROFILE === 'smoke' ? 10 : 60);

const failed = new Rate('live_request_failed');
const blockingWait = new Trend('live_blocking_wait_ms', true);
const partTtfb = new Trend('live_part_ttfb_ms', true);
// How old the newest listed part's end is when the playlist arrives: the
// delivery path's share of latency (the encoder's and the player's buffer are not in it).
const behind = new Trend('live_playlist_age_ms', true);
const parts = new Counter('live_parts');
const missedParts = new Counter('live_blocking_answers_without_the_part');

function stagesFor(profile) {
  switch (profile) {
    case 'smoke':
      return [{ duration: '1s', target: viewers }, { duration: `${viewSeconds}s`, target: viewers }];
    case 'steady':
    case 'full':
      return [{ duration: '20s', target: viewers }, { duration: `${viewSeconds}s`, target: viewers }];
    default:
      throw new Error(`unknown profile ${profile}: smoke or steady`);
  }
}

export const options = {
  scenarios: { viewers: { executor: 'ramping-vus', startVUs: 0, stages: stagesFor(PROFILE), gracefulRampDown: '15s', exec: 'watch' } },
  insecureSkipTLSVerify: true,
  summaryTrendStats: ['avg', 'min', 'med', 'max', 'p(90)', 'p(95)', 'p(99)', 'count'],
  thresholds: {
    live_request_failed: ['rate==0'],
    live_parts: ['count>0'],
    live_blocking_answers_without_the_part: ['count==0'],
  },
};

// URIs may carry the viewer's session query (the edge tags them).
const PART = /^#EXT-X-PART:.*URI="(part-(\d+)-(\d+)\.m4s)(\?[^"]*)?"/;
const HINT = /^#EXT-X-PRELOAD-HINT:TYPE=PART,URI="part-(\d+)-(\d+)\.m4s(\?[^"]*)?"/;

// The hinted (msn, part), and when the newest listed part ends on the ingest clock.
export function parse(text) {
  let hint = null;
  let pdt = null;
  let end = null;
  const listed = new Set();
  for (const line of text.split('\n')) {
    if (line.startsWith('#EXT-X-PROGRAM-DATE-TIME:')) {
      pdt = Date.parse(line.slice('#EXT-X-PROGRAM-DATE-TIME:'.length));
      end = pdt;
    } else if (line.startsWith('#EXT-X-PART:')) {
      const d = /DURATION=([0-9.]+)/.exec(line);
      if (d && end !== null) end += Number(d[1]) * 1000;
      const m = PART.exec(line);
      if (m) listed.add(m[1]);
    } else if (line.startsWith('#EXTINF:') && pdt !== null) {
      // A complete segment: the next PDT line (or the parts after it) starts the next.
      end = pdt + Number(line.slice(8).split(',')[0]) * 1000;
    }
    const h = HINT.exec(line);
    if (h) hint = { msn: Number(h[1]), part: Number(h[2]) };
  }
  return { hint, end, listed };
}

function get(url, tags) {
  const r = http.get(url, { tags, timeout: '20s' });
  failed.add(r.status !== 200, tags);
  return r;
}

export function watch() {
  const m = get(master, { kind: 'master' });
  if (m.status !== 200) return;
  // The primary pathway's first variant; its session query rides on every request.
  const [variant, session] = m.body.split('\n').find((l) => l && !l.startsWith('#')).split('?');
  const base = master.replace(/[^/]*$/, '').replace(/\?.*$/, '');
  const media = base + variant;
  const dir = media.replace(/[^/]*$/, '');
  const q = session ? `?${session}` : '';
  const and = session ? `?${session}&` : '?';
  let r = get(media + q, { kind: 'playlist' });
  if (r.status !== 200) return;
  let p = parse(r.body);
  const until = Date.now() + viewSeconds * 1000;
  while (Date.now() < until && p.hint) {
    const want = p.hint;
    r = get(`${media}${and}_HLS_msn=${want.msn}&_HLS_part=${want.part}`, { kind: 'blocking' });
    blockingWait.add(r.timings.duration);
    if (r.status !== 200) return;
    p = parse(r.body);
    if (p.end !== null) behind.add(Date.now() - p.end);
    const name = `part-${want.msn}-${want.part}.m4s`;
    // The hint may name a segment's first part the encoder put elsewhere;
    // the answer must then list a later part, never an older playlist.
    if (!p.listed.has(name)) {
      const later = [...p.listed].some((n) => {
        const [, ms, ps] = /part-(\d+)-(\d+)/.exec(n);
        return Number(ms) > want.msn || (Number(ms) === want.msn && Number(ps) > want.part);
      });
      if (!later) missedParts.add(1);
      continue;
    }
    const part = get(dir + name + q, { kind: 'part' });
    check(part, { 'part has bytes': (x) => x.body && x.body.length > 0 });
    partTtfb.add(part.timings.waiting);
    parts.add(1);
  }
}

export const handleSummary = summaryFor('live');
