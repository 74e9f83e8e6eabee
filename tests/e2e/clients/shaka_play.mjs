// Plays a DASH manifest or an HLS master with Shaka Player inside headless
// Chromium and reports what happened: a second player, written
// independently of hls.js, so a server bug one of them tolerates still
// shows. Owned by the end-to-end tests, which spawn it and read its lines as
// they come; the browser, the page and the run's bounds are the shared
// harness's (chromium_player.mjs, which also lists the lines every player
// writes: ready, request, console, done).
//
//   node shaka_play.mjs --url MANIFEST_URL [--seconds N] [--max-attempts N]
//
// Shaka is set up not to hide server bugs: every request is made once
// (manifest and streaming retryParameters.maxAttempts = 1; --max-attempts
// raises it, to see that the retry counter below counts) and a failed
// segment does not quietly disable its stream for a while and switch to
// another (streaming.maxDisabledTime = 0), so a bad answer is an error here.
//
// Shaka's own lines:
//   loaded    manifest_type (DASH|HLS), variants [{height, bandwidth}]
//   response  type (manifest, segment, content_steering, ...), url, host,
//             status, from_cache: each answer Shaka's networking engine got
//             (its response filter; failures arrive as errors instead)
//   retry     url, code, name: a request that failed in a way the
//             networking engine retries (its "retry" event, from every
//             engine the player creates). It fires for every such failure,
//             the last attempt's too, so with --max-attempts 1 it counts
//             failures Shaka would have retried, and none is repeated.
//   variant   height, bandwidth: each switch (adaptation, variantchanged)
//   error     fatal, severity, category, code, name, data (the player's
//             "error" event, a rejected load, or the <video> element's)
//   time      t (currentTime), buffered_end, paused, ready_state: each second
//   ended     t
// and in "done": manifest_type, stats (from player.getStats()), errors,
// fatal_errors, retry_events, responses_by_type.
import { fileURLToPath } from 'node:url'
import { hostOf, option, run } from './chromium_player.mjs'

const mediaUrl = option('url', null)
const seconds = Number(option('seconds', 30))
const maxAttempts = Number(option('max-attempts', 1))
if (!mediaUrl || !(seconds > 0) || !(maxAttempts >= 1)) {
  console.error('usage: node shaka_play.mjs --url MANIFEST_URL [--seconds N] [--max-attempts N]')
  process.exit(64)
}

// The full build: DASH and HLS parsers both.
const SHAKA = fileURLToPath(new URL('./node_modules/shaka-player/dist/shaka-player.compiled.js', import.meta.url))

let errors = 0
let fatalErrors = 0
let retryEvents = 0
const responsesByType = {}

function onReport(ev) {
  if (ev.event === 'response') {
    ev.host = hostOf(ev.url)
    responsesByType[ev.type] = (responsesByType[ev.type] || 0) + 1
  } else if (ev.event === 'retry') {
    retryEvents++
  } else if (ev.event === 'error') {
    errors++
    if (ev.fatal) fatalErrors++
  }
}

// Runs inside the page. Must be self-contained: Playwright sends its source.
async function playerMain({ src, maxAttempts }) {
  const report = window.report
  const video = document.getElementById('video')
  const NE = shaka.net.NetworkingEngine
  const typeName = {}
  for (const [name, n] of Object.entries(NE.RequestType)) typeName[n] = name.toLowerCase()
  const codeName = {}
  for (const [name, n] of Object.entries(shaka.util.Error.Code)) codeName[n] = name
  // Error data holds strings, numbers and sometimes objects (a nested
  // error, a request): only what survives JSON is passed on.
  const plain = (x) => (x === null || ['string', 'number', 'boolean'].includes(typeof x) ? x : String(x))
  const describe = (err) => ({
    fatal: err.severity === shaka.util.Error.Severity.CRITICAL,
    severity: err.severity,
    category: err.category,
    code: err.code,
    name: codeName[err.code] || null,
    data: Array.isArray(err.data) ? err.data.map(plain) : [],
  })

  // load() makes a networking engine of its own (a preload manager's, with
  // the player's filters copied in), so the retry event is caught on the
  // class: every engine's, whichever one made the request.
  const dispatch = NE.prototype.dispatchEvent
  NE.prototype.dispatchEvent = function (ev) {
    if (ev && ev.type === 'retry') {
      const e = ev.error
      report({ event: 'retry', code: e ? e.code : null, name: e ? codeName[e.code] || null : null, url: e && Array.isArray(e.data) ? plain(e.data[0]) : null })
    }
    return dispatch.call(this, ev)
  }

  const player = new shaka.Player()
  window.player = player
  await player.attach(video)
  player.configure({
    manifest: { retryParameters: { maxAttempts } },
    streaming: { retryParameters: { maxAttempts }, maxDisabledTime: 0 },
  })
  const net = player.getNetworkingEngine()
  net.registerResponseFilter((type, response) => {
    report({ event: 'response', type: typeName[type] || String(type), url: response.uri, status: response.status ?? null, from_cache: !!response.fromCache })
  })

  player.addEventListener('error', (e) => report({ event: 'error', source: 'player', ...describe(e.detail) }))
  const noteVariant = () => {
    const v = player.getVariantTracks().find((t) => t.active)
    if (v) report({ event: 'variant', height: v.height, bandwidth: v.bandwidth })
  }
  player.addEventListener('adaptation', noteVariant)
  player.addEventListener('variantchanged', noteVariant)
  // A decoder that rejects the stream shows here, not always in Shaka.
  video.addEventListener('error', () => {
    const e = video.error
    report({ event: 'error', source: 'video', fatal: true, severity: 2, category: null, code: null, name: 'mediaElementError', data: [e ? `code ${e.code}: ${e.message}` : 'unknown'] })
  })
  video.addEventListener('ended', () => report({ event: 'ended', t: video.currentTime }))
  setInterval(() => {
    const b = video.buffered
    report({ event: 'time', t: video.currentTime, buffered_end: b.length ? b.end(b.length - 1) : 0, paused: video.paused, ready_state: video.readyState })
  }, 1000)

  try {
    await player.load(src)
  } catch (err) {
    // A failed load rejects; it is not also an "error" event.
    report({ event: 'error', source: 'load', ...(err && err.code ? describe(err) : { fatal: true, severity: 2, category: null, code: null, name: null, data: [String(err)] }) })
    return
  }
  report({
    event: 'loaded',
    manifest_type: player.getManifestType(),
    variants: player.getVariantTracks().map((t) => ({ height: t.height, bandwidth: t.bandwidth })),
  })
  noteVariant()
  video.play().catch((e) => report({ event: 'error', source: 'play', fatal: false, severity: 1, category: null, code: null, name: 'play', data: [String(e)] }))
}

// The player's own account of the run.
function pageSummary() {
  const p = window.player
  if (!p) return {}
  const s = p.getStats()
  const pick = ['width', 'height', 'streamBandwidth', 'playTime', 'bufferingTime', 'loadLatency', 'bytesDownloaded', 'manifestSizeBytes', 'nonFatalErrorCount', 'stallsDetected', 'gapsJumped', 'decodedFrames', 'droppedFrames']
  const stats = {}
  for (const k of pick) stats[k] = Number.isFinite(s[k]) ? s[k] : null
  return { manifest_type: p.getManifestType(), stats }
}

const probe = () => {
  const loaded = typeof shaka === 'object' && !!shaka.Player
  if (loaded) shaka.polyfill.installAll()
  return {
    loaded,
    shaka: loaded ? shaka.Player.version : null,
    supported: loaded && shaka.Player.isBrowserSupported(),
    mse_h264_aac: !!window.MediaSource && MediaSource.isTypeSupported('video/mp4; codecs="avc1.64001f,mp4a.40.2"'),
  }
}

await run({
  title: 'shaka_play',
  library: SHAKA,
  seconds,
  probe,
  main: playerMain,
  mainArg: { src: mediaUrl, maxAttempts },
  onReport,
  summary: pageSummary,
  done: () => ({ errors, fatal_errors: fatalErrors, retry_events: retryEvents, responses_by_type: responsesByType }),
})
