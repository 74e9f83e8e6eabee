// What every scenario reads from its environment: where the platform is,
// who the load acts as, and which profile shapes the load. scripts/load sets
// all of these; `k6 run` by hand needs BASE_URL and CREATOR_KEY at least.

export const BASE_URL = (__ENV.BASE_URL || 'http://127.0.0.1:8080').replace(/\/+$/, '');
// The second front door (HAProxy in the native stack and in Compose).
export const ALT_BASE_URL = (__ENV.ALT_BASE_URL || BASE_URL).replace(/\/+$/, '');
export const CREATOR_KEY = __ENV.CREATOR_KEY || '';
export const PROFILE = __ENV.PROFILE || 'smoke';
// Comma-separated ids of ready, public videos (scripts/load seeds them).
export const VIDEO_IDS = (__ENV.VIDEO_IDS || '').split(',').map((s) => s.trim()).filter(Boolean);
// Edges' own metrics endpoints, for the cache hit ratio (comma-separated base URLs).
export const EDGE_METRICS = (__ENV.EDGE_METRICS || '').split(',').map((s) => s.trim()).filter(Boolean);

export function authHeaders(extra) {
  const h = Object.assign({}, extra || {});
  if (CREATOR_KEY) h.Authorization = `Bearer ${CREATOR_KEY}`;
  return h;
}

// A number from the environment, or the default; a value that is not a
// number stops the run at once instead of loading with a NaN.
export function envNumber(name, fallback) {
  const raw = __ENV[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n)) throw new Error(`${name}=${raw} is not a number`);
  return n;
}

export function requireVideos(min) {
  if (VIDEO_IDS.length < min) {
    throw new Error(`this scenario needs at least ${min} ready public video id(s) in VIDEO_IDS (scripts/load seeds them); got ${VIDEO_IDS.length}`);
  }
  return VIDEO_IDS;
}
