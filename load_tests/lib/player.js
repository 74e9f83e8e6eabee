// A player model, not a URL hammer: one virtual viewer fetches the master
// playlist, picks a rung for its simulated link, fetches the media playlist
// and init section, then segments at real-time pace while keeping a buffer;
// it switches rungs on measured throughput and follows content steering.
//
// The viewer's link is simulated: a segment that arrives faster than the
// link could carry it is held back (sleep) until the link would have
// delivered it, so pacing, buffer and rung choice behave as they would at
// that bandwidth. What the server costs is measured, never simulated: TTFB
// and download time come from k6's own timings.

import http from 'k6/http';
import { sleep } from 'k6';
import { Counter, Rate, Trend } from 'k6/metrics';
import { parseMaster, parseMedia } from './hls.js';

export const startupTime = new Trend('player_startup_ms', true);
export const segmentTtfb = new Trend('player_segment_ttfb_ms', true);
export const servedBitrate = new Trend('player_served_kbps');
export const rebufferEvents = new Counter('player_rebuffer_events');
export const rebufferSeconds = new Counter('player_rebuffer_seconds');
export const playedSeconds = new Counter('player_buffered_media_seconds');
export const requestFailed = new Rate('player_request_failed');
export const requestRetried = new Counter('player_request_retries');
export const rungSwitches = new Counter('player_rung_switches');
export const pathwaySwitches = new Counter('player_pathway_switches');
export const segmentCacheHit = new Rate('player_segment_cache_hit');

// Simulated viewer links (bits/s) and their shares: a third on slow mobile,
// most on home broadband, some on fibre.
export const LINKS = [
  { share: 0.25, bps: 2e6 },
  { share: 0.5, bps: 8e6 },
  { share: 0.25, bps: 40e6 },
];

export function sampleLink() {
  let r = Math.random();
  for (const l of LINKS) {
    if ((r -= l.share) <= 0) return l.bps;
  }
  return LINKS[LINKS.length - 1].bps;
}

const BUFFER_TARGET_S = 12; // hls.js's default maxBufferLength is 30 s; two segments of ours
const SAFETY = 0.8; // a rung fits when its BANDWIDTH is below 80 % of the estimate
const RETRIES = 2; // as a player does; every retry is counted, never hidden

// GET with the player's retries. Returns { res, wallMs } (wallMs: the time
// the successful try took), or null when every try failed. Media bodies are
// not kept (`none`): the generator's memory and CPU go to requests.
function fetch(url, tags, responseType) {
  for (let attempt = 0; attempt <= RETRIES; attempt++) {
    const started = Date.now();
    const res = http.get(url, { tags, responseType: responseType || 'none', timeout: '10s' });
    if (res.status === 200) {
      requestFailed.add(false, tags);
      return { res, wallMs: Date.now() - started };
    }
    if (attempt < RETRIES) {
      requestRetried.add(1, tags);
      sleep(0.5 * (attempt + 1));
    }
  }
  requestFailed.add(true, tags);
  return null;
}

function bytes(res) {
  return Number(res.headers['Content-Length'] || 0);
}

function rungFor(variants, estimateBps) {
  let pick = variants[0];
  for (const v of variants) if (v.bandwidth <= estimateBps * SAFETY) pick = v;
  return pick;
}

// Follows the steering server: returns the pathway to use now and when to ask again.
function steer(steering, available, tags) {
  const res = http.get(steering.uri, { tags: Object.assign({ kind: 'steering' }, tags), timeout: '5s' });
  if (res.status !== 200) return { pathway: steering.pathway, ttl: 10 };
  const doc = res.json();
  if (doc['RELOAD-URI']) steering.uri = doc['RELOAD-URI'].startsWith('http') ? doc['RELOAD-URI'] : steering.uri;
  const pathway = (doc['PATHWAY-PRIORITY'] || []).find((p) => available.includes(p)) || steering.pathway;
  return { pathway, ttl: Number(doc.TTL) || 300 };
}

// One view of `masterUrl` for at most `seconds` of wall time. `opts.steering`
// false keeps the viewer on the master's first pathway (the distant-viewer
// experiment pins each viewer to its path).
export function watch(masterUrl, seconds, linkBps, baseTags, opts) {
  const followSteering = !opts || opts.steering !== false;
  const tags = Object.assign({}, baseTags || {});
  const t0 = Date.now();
  const deadline = t0 + seconds * 1000;
  const got = fetch(masterUrl, Object.assign({ kind: 'master' }, tags), 'text');
  if (!got) return;
  const master = parseMaster(got.res.body, masterUrl);
  const pathways = [...new Set(master.variants.map((v) => v.pathway))];
  let pathway = master.steering ? master.steering.pathway : pathways[0];
  let nextSteer = 0;
  const onPathway = () => master.variants.filter((v) => v.pathway === pathway);
  let estimate = linkBps * 0.5; // a cautious first guess, as players make
  let rung = rungFor(onPathway(), estimate);
  let media = null;
  let audio = null; // the variant's audio rendition, fetched segment by segment beside the video
  let index = 0;
  let buffer = 0;
  let started = false;
  let last = Date.now();

  const load = (variant) => {
    const got = fetch(variant.url, Object.assign({ kind: 'playlist' }, tags), 'text');
    if (!got) return false;
    media = parseMedia(got.res.body, variant.url);
    if (media.init && !fetch(media.init, Object.assign({ kind: 'init' }, tags))) return false;
    audio = null;
    const audioUrl = variant.audio && master.audio[variant.audio];
    if (audioUrl) {
      const a = fetch(audioUrl, Object.assign({ kind: 'playlist' }, tags), 'text');
      if (!a) return false;
      audio = parseMedia(a.res.body, audioUrl);
      if (audio.init && !fetch(audio.init, Object.assign({ kind: 'init' }, tags))) return false;
    }
    return true;
  };
  if (!load(rung)) return;

  // Plays the buffer for the wall time since the last call; an empty buffer
  // is a stall for as long as it stayed empty. Returns now.
  const playUntilNow = () => {
    const now = Date.now();
    if (started) buffer -= (now - last) / 1000;
    last = now;
    if (started && buffer < 0) {
      rebufferEvents.add(1, tags);
      rebufferSeconds.add(-buffer, tags);
      buffer = 0;
    }
    return now;
  };

  while (Date.now() < deadline && index < media.segments.length) {
    if (followSteering && master.steering && Date.now() >= nextSteer) {
      const s = steer(master.steering, pathways, tags);
      nextSteer = Date.now() + s.ttl * 1000;
      if (s.pathway !== pathway) {
        pathway = s.pathway;
        pathwaySwitches.add(1, tags);
        rung = rungFor(onPathway(), estimate);
        if (!load(rung)) return;
      }
    }
    // Real-time pace: above the target the viewer only watches.
    if (buffer > BUFFER_TARGET_S) sleep(buffer - BUFFER_TARGET_S);
    playUntilNow();

    const seg = media.segments[index];
    const segTags = Object.assign({ kind: 'segment', rung: String(rung.height) }, tags);
    const got = fetch(seg.url, segTags);
    if (!got) return;
    const res = got.res;
    let n = bytes(res);
    let serverMs = got.wallMs;
    // The audio segment of the same span shares the link (ours are aligned, 6 s each).
    if (audio && index < audio.segments.length) {
      const audioTags = Object.assign({ kind: 'segment', rung: 'audio' }, tags);
      const a = fetch(audio.segments[index].url, audioTags);
      if (!a) return;
      segmentTtfb.add(a.res.timings.waiting, audioTags);
      segmentCacheHit.add(a.res.headers['X-Cache'] === 'HIT', audioTags);
      n += bytes(a.res);
      serverMs += a.wallMs;
    }
    const linkMs = (n * 8 * 1000) / linkBps;
    if (linkMs > serverMs) sleep((linkMs - serverMs) / 1000);
    const tookMs = Math.max(serverMs, linkMs);
    segmentTtfb.add(res.timings.waiting, segTags);
    servedBitrate.add(rung.bandwidth / 1000, segTags);
    segmentCacheHit.add(res.headers['X-Cache'] === 'HIT', segTags);

    const after = playUntilNow();
    buffer += seg.duration;
    playedSeconds.add(seg.duration, tags);
    if (!started) {
      started = true;
      startupTime.add(after - t0, tags);
    }
    index++;

    // Throughput: a moving average, as hls.js keeps one.
    estimate = 0.7 * estimate + 0.3 * ((n * 8 * 1000) / Math.max(tookMs, 1));
    const better = rungFor(onPathway(), estimate);
    if (better.url !== rung.url) {
      rungSwitches.add(1, tags);
      rung = better;
      if (!load(rung)) return;
    }
  }
}
