// Plays an HLS stream with hls.js inside headless Chromium and reports what
// happened. Owned by the end-to-end tests, which spawn it and read its lines
// as they come; the browser, the page and the run's bounds are the shared
// harness's (chromium_player.mjs, which also lists the lines every player
// writes: ready, request, console, done).
//
//   node hls_play.mjs --url MASTER_M3U8_URL [--seconds N] [--max-buffer S] [--no-retry] [--low-latency] [--switch-after S]
//
// hls.js's own lines:
//   manifest  levels [{height, bitrate, url, pathway}] of every pathway,
//             audio_tracks, content_steering {uri, pathwayId}, pathway
//   steering  reason "manifest-loaded" (pathway still in use, priority,
//             url as requested, manifest) or "switch" (pathway, from)
//   level     level, height, bitrate, pathway, url       (LEVEL_SWITCHED)
//   frag      type main|audio, url, host, level, sn, part (index, or null for a
//             whole segment), bytes, retries (FRAG_LOADED)
//   loaded    kind manifest|level|audio-track, url, retries: each playlist
//   error     fatal, type, details, url, status, message, action,
//             retry_count (hls.js ERROR, or type mediaElementError from the
//             <video> itself)
//   time      t (currentTime), buffered_end, paused, ready_state, and for a
//             live stream latency_ms: now minus the PROGRAM-DATE-TIME at the
//             playhead (glass-to-glass when the PDT is the ingest clock),
//             and hls_latency (hls.js's own estimate, s): each second
//   ended     t
// and in "done": pathway, frags_by_host {host: n}, fatal_errors, errors,
// retries: requests hls.js repeated, by its own counts — per URL, the
// larger of the loaded object's stats.retry and the highest retry_count of
// its errors (a load retried twice and then loaded reports both).
//
// Content steering is hls.js's own (its ContentSteeringController, on by
// default in the full build): this script only watches it.
// --max-buffer caps how far ahead hls.js fetches (its default is 30 s, and
// more when it can): on loopback a short VOD is otherwise fetched whole in
// the first second, and a later pathway switch has no fragments left to move.
// --no-retry sets every load policy's retries to 0, so a server error
// reaches the player (and this report) instead of being retried away.
// --low-latency plays a live stream as LL-HLS: parts, blocking playlist
// reloads and preload hints (hls.js's lowLatencyMode, said explicitly), and
// catches up with the live edge after a stall by playing up to 1.5x
// (maxLiveSyncPlaybackRate; hls.js's default of 1 never catches up).
// --switch-after S asks hls.js, S seconds after playback starts, for the
// lowest rung (hls.nextLevel = 0) and reports a "switch-requested" line: a
// rung switch the test can expect, on loopback where the bandwidth estimate
// alone never moves off the top.
import { fileURLToPath } from 'node:url'
import { emit, flag, hostOf, option, run } from './chromium_player.mjs'

const mediaUrl = option('url', null)
const seconds = Number(option('seconds', 30))
const maxBuffer = option('max-buffer', null) === null ? null : Number(option('max-buffer'))
const noRetry = flag('no-retry')
const lowLatency = flag('low-latency')
const switchAfter = option('switch-after', null) === null ? null : Number(option('switch-after'))
if (!mediaUrl || !(seconds > 0) || (maxBuffer !== null && !(maxBuffer > 0))) {
  console.error('usage: node hls_play.mjs --url MASTER_M3U8_URL [--seconds N] [--max-buffer S] [--no-retry] [--low-latency]')
  process.exit(64)
}

const HLS_JS = fileURLToPath(new URL('./node_modules/hls.js/dist/hls.min.js', import.meta.url))

// Tallies for the closing "done" line, kept on this side so they survive a
// page that has stopped answering.
const fragsByHost = {}
let errors = 0
let fatalErrors = 0
// URL -> retries seen for it (see "retries" above).
const retriesByUrl = new Map()
const noteRetries = (url, n) => {
  if (url && n > 0) retriesByUrl.set(url, Math.max(retriesByUrl.get(url) || 0, n))
}

function onReport(ev) {
  if (ev.event === 'frag') {
    ev.host = hostOf(ev.url)
    fragsByHost[ev.host] = (fragsByHost[ev.host] || 0) + 1
  } else if (ev.event === 'error') {
    errors++
    if (ev.fatal) fatalErrors++
    noteRetries(ev.url, ev.retry_count || 0)
  }
  if (ev.event === 'frag' || ev.event === 'loaded') noteRetries(ev.url, ev.retries || 0)
}
const totalRetries = () => [...retriesByUrl.values()].reduce((a, b) => a + b, 0)

// Runs inside the page. Must be self-contained: Playwright sends its source.
// Hls event payloads hold Fragment and Level objects with cycles, so only
// plain fields are passed to report().
function playerMain({ src, maxBuffer, noRetry, lowLatency, switchAfter }) {
  const report = window.report
  const video = document.getElementById('video')
  const E = Hls.Events
  const bufferCap = maxBuffer ? { maxBufferLength: maxBuffer, maxMaxBufferLength: maxBuffer } : {}
  // Every *LoadPolicy (manifest, playlist, fragment, key, steering, ...) as
  // hls.js ships it, with both kinds of retry turned off.
  const retryOff = {}
  if (noRetry) {
    for (const [name, policy] of Object.entries(Hls.DefaultConfig)) {
      if (!name.endsWith('LoadPolicy') || !policy || !policy.default) continue
      const d = policy.default
      retryOff[name] = {
        default: {
          ...d,
          timeoutRetry: d.timeoutRetry ? { ...d.timeoutRetry, maxNumRetry: 0 } : null,
          errorRetry: d.errorRetry ? { ...d.errorRetry, maxNumRetry: 0 } : null,
        },
      }
    }
  }
  const live = lowLatency ? { lowLatencyMode: true, maxLiveSyncPlaybackRate: 1.5 } : { lowLatencyMode: false }
  const hls = new Hls({ debug: false, ...live, ...bufferCap, ...retryOff })
  window.hls = hls

  let pathway = null
  const currentPathway = () => (hls.levels && hls.levels[0] ? hls.levels[0].pathwayId : null)
  // hls.js switches pathways by replacing hls.levels with the new pathway's
  // variants (LEVELS_UPDATED), after STEERING_MANIFEST_LOADED; it has no
  // event of its own for the switch, so it is noticed here.
  const notePathway = () => {
    const now = currentPathway()
    if (now !== null && now !== pathway) {
      const from = pathway
      pathway = now
      report({ event: 'steering', reason: 'switch', pathway: now, from, priority: hls.pathwayPriority })
    }
  }

  hls.on(E.MANIFEST_LOADED, (_, data) => {
    // hls.js parses the variants (MANIFEST_PARSED, keeping only the current
    // pathway's playable ones) from within its own MANIFEST_LOADED handler,
    // which runs before this one: hls.levels is already the parsed list.
    report({
      event: 'manifest',
      levels: data.levels.map((l) => ({
        height: l.height,
        bitrate: l.bitrate,
        // Parsed variants keep a list of URLs (redundant streams).
        url: Array.isArray(l.url) ? l.url[0] : l.url,
        pathway: l.attrs['PATHWAY-ID'] || '.',
      })),
      audio_tracks: data.audioTracks.length,
      content_steering: data.contentSteering,
      playable_levels: hls.levels.length,
      pathways: hls.pathways,
      pathway: currentPathway(),
    })
    pathway = currentPathway()
  })
  hls.on(E.MANIFEST_PARSED, () => {
    video.play().catch((e) => report({ event: 'error', fatal: false, type: 'play', details: String(e), url: null }))
  })
  if (switchAfter !== null) {
    video.addEventListener('playing', () => {
      setTimeout(() => {
        report({ event: 'switch-requested', from: hls.currentLevel, to: 0 })
        hls.nextLevel = 0
      }, switchAfter * 1000)
    }, { once: true })
  }
  hls.on(E.STEERING_MANIFEST_LOADED, (_, data) => {
    // Fired before hls.js applies the new priority, so "pathway" here is
    // still the one in use; a switch, if any, follows as its own line.
    report({
      event: 'steering',
      reason: 'manifest-loaded',
      pathway: currentPathway(),
      priority: data.steeringManifest['PATHWAY-PRIORITY'] || null,
      url: data.url,
      manifest: data.steeringManifest,
    })
  })
  hls.on(E.LEVELS_UPDATED, notePathway)
  hls.on(E.LEVEL_SWITCHED, (_, data) => {
    const l = hls.levels[data.level]
    report({
      event: 'level',
      level: data.level,
      height: l ? l.height : null,
      bitrate: l ? l.bitrate : null,
      pathway: l ? l.pathwayId : null,
      url: l ? l.uri : null,
    })
  })
  hls.on(E.FRAG_LOADED, (_, data) => {
    const f = data.frag
    const part = data.part ? data.part.index : null
    const stats = data.part ? data.part.stats : f.stats
    report({ event: 'frag', type: f.type, url: data.part ? data.part.url : f.url, level: f.level, sn: f.sn, part, bytes: stats.loaded, retries: stats.retry || 0 })
  })
  // Playlists: how many times each load was retried before it succeeded.
  for (const [event, kind] of [[E.MANIFEST_LOADED, 'manifest'], [E.LEVEL_LOADED, 'level'], [E.AUDIO_TRACK_LOADED, 'audio-track']]) {
    hls.on(event, (_, data) => report({ event: 'loaded', kind, url: data.url || (data.details && data.details.url) || null, retries: (data.stats && data.stats.retry) || 0 }))
  }
  hls.on(E.ERROR, (_, data) => {
    report({
      event: 'error',
      fatal: !!data.fatal,
      type: data.type,
      details: data.details,
      url: data.url || (data.frag && data.frag.url) || (data.context && data.context.url) || null,
      status: data.response ? data.response.code : null,
      message: data.error ? String(data.error.message || data.error) : (data.reason || null),
      // What hls.js decided to do about it (NetworkErrorAction: 5 is a retry).
      action: data.errorAction ? data.errorAction.action : null,
      retry_count: data.errorAction ? data.errorAction.retryCount : null,
    })
  })
  // A decoder that rejects the stream shows here, not always in hls.js.
  video.addEventListener('error', () => {
    const e = video.error
    report({ event: 'error', fatal: true, type: 'mediaElementError', details: e ? `code ${e.code}: ${e.message}` : 'unknown', url: null })
  })
  video.addEventListener('ended', () => report({ event: 'ended', t: video.currentTime }))

  setInterval(() => {
    const b = video.buffered
    report({
      event: 'time',
      t: video.currentTime,
      buffered_end: b.length ? b.end(b.length - 1) : 0,
      paused: video.paused,
      ready_state: video.readyState,
      pathway: currentPathway(),
      latency_ms: hls.playingDate ? Date.now() - hls.playingDate.getTime() : null,
      hls_latency: Number.isFinite(hls.latency) ? hls.latency : null,
    })
  }, 1000)

  hls.attachMedia(video)
  hls.loadSource(src)
}

// The pathway in use when the run ends.
function pageSummary() {
  const hls = window.hls
  return { pathway: hls && hls.levels && hls.levels[0] ? hls.levels[0].pathwayId : null }
}

const probe = () => ({
  loaded: typeof Hls === 'function',
  hls_js: typeof Hls === 'function' ? Hls.version : null,
  hls_supported: typeof Hls === 'function' && Hls.isSupported(),
  steering_controller: typeof Hls === 'function' && !!Hls.DefaultConfig.contentSteeringController,
  mse_h264_aac: !!window.MediaSource && MediaSource.isTypeSupported('video/mp4; codecs="avc1.64001f,mp4a.40.2"'),
  mse_h264: !!window.MediaSource && MediaSource.isTypeSupported('video/mp4; codecs="avc1.64001f"'),
  mse_aac: !!window.MediaSource && MediaSource.isTypeSupported('audio/mp4; codecs="mp4a.40.2"'),
})

await run({
  title: 'hls_play',
  library: HLS_JS,
  seconds,
  probe,
  main: playerMain,
  mainArg: { src: mediaUrl, maxBuffer, noRetry, lowLatency, switchAfter },
  onReport,
  summary: pageSummary,
  done: () => ({ frags_by_host: fragsByHost, fatal_errors: fatalErrors, errors, retries: totalRetries() }),
})
