// Plays an HLS stream with hls.js inside headless Chromium (Debian's
// /usr/bin/chromium, driven by playwright-core) and reports what happened.
// Owned by the end-to-end tests, which spawn it and read its lines as they
// come.
//
//   node hls_play.mjs --url MASTER_M3U8_URL [--seconds N] [--max-buffer S]
//
// One JSON object a line on stdout, each with "event" and "ms" (since this
// process started):
//   ready     page, browser, hls_js, mse_h264_aac (and mse_h264, mse_aac)
//   manifest  levels [{height, bitrate, url, pathway}] of every pathway,
//             audio_tracks, content_steering {uri, pathwayId}, pathway
//   steering  reason "manifest-loaded" (pathway still in use, priority,
//             url as requested, manifest) or "switch" (pathway, from)
//   level     level, height, bitrate, pathway, url       (LEVEL_SWITCHED)
//   frag      type main|audio, url, host, level, sn, bytes (FRAG_LOADED)
//   request   url, host, status, failed, error, kind, started_ms: every
//             http(s) request the page made, as the browser saw it
//   error     fatal, type, details, url, status, message (hls.js ERROR, or
//             type mediaElementError from the <video> itself)
//   console   level, text: page errors and warnings (CORS refusals show here)
//   time      t (currentTime), buffered_end, paused, ready_state: each second
//   ended     t
//   done      played_seconds, frags_by_host {host: n}, fatal_errors, errors
//
// Exits 0 after --seconds (default 30) of wall time from the start of
// playback, whatever the player ran into: judging playback is the test's
// job. Exits non-zero after a {"event":"fatal-harness", stage, error} line
// when the harness itself failed (browser did not start or went away, page
// did not load), on SIGINT/SIGTERM/SIGHUP, or at the hard timeout of
// seconds + 30 s.
//
// The page is served from this process's own 127.0.0.1 origin, never from
// the media's, so every playlist, fragment and steering request is a real
// cross-origin request and the media servers' CORS headers are exercised.
// Content steering is hls.js's own (its ContentSteeringController, on by
// default in the full build): this script only watches it.
// --max-buffer caps how far ahead hls.js fetches (its default is 30 s, and
// more when it can): on loopback a short VOD is otherwise fetched whole in
// the first second, and a later pathway switch has no fragments left to move.
import fs from 'node:fs'
import http from 'node:http'
import { fileURLToPath } from 'node:url'
import { chromium } from 'playwright-core'

const args = process.argv.slice(2)
const opt = (name, fallback) => {
  const i = args.indexOf(`--${name}`)
  return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback
}
const mediaUrl = opt('url', null)
const seconds = Number(opt('seconds', 30))
const maxBuffer = opt('max-buffer', null) === null ? null : Number(opt('max-buffer'))
if (!mediaUrl || !(seconds > 0) || (maxBuffer !== null && !(maxBuffer > 0))) {
  console.error('usage: node hls_play.mjs --url MASTER_M3U8_URL [--seconds N] [--max-buffer S]')
  process.exit(64)
}

const HLS_JS = fileURLToPath(new URL('./node_modules/hls.js/dist/hls.min.js', import.meta.url))
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--autoplay-policy=no-user-gesture-required',
]

// The reader acts on lines while we run, so each one goes out whole and at
// once (stdout to a pipe is synchronous in Node on Linux). "ms" lets the
// test time things such as a pathway switch from the lines alone. Nothing
// follows the closing line: late page callbacks are dropped.
const t0 = Date.now()
let closed = false
const emit = (obj) => {
  if (!closed) process.stdout.write(JSON.stringify({ ...obj, ms: Date.now() - t0 }) + '\n')
}

const hostOf = (url) => {
  try {
    return new URL(url).host
  } catch {
    return null
  }
}

// Tallies for the closing "done" line, kept on this side so they survive a
// page that has stopped answering.
const fragsByHost = {}
let errors = 0
let fatalErrors = 0

// Everything the page tells us arrives here, through page.exposeFunction.
function onReport(ev) {
  if (ev.event === 'frag') {
    ev.host = hostOf(ev.url)
    fragsByHost[ev.host] = (fragsByHost[ev.host] || 0) + 1
  } else if (ev.event === 'error') {
    errors++
    if (ev.fatal) fatalErrors++
  }
  emit(ev)
}

// The HTML page and hls.js, from an origin of our own. The player logic is
// not in the HTML: it is playerMain below, handed over by page.evaluate.
const PAGE = `<!doctype html>
<meta charset="utf-8">
<title>hls_play</title>
<video id="video" muted playsinline></video>
<script src="/hls.js"></script>
`

function startServer() {
  const hlsJs = fs.readFileSync(HLS_JS)
  const server = http.createServer((req, res) => {
    const path = req.url.split('?')[0]
    const send = (status, type, body) => {
      res.writeHead(status, { 'Content-Type': type, 'Cache-Control': 'no-store' })
      res.end(body)
    }
    if (path === '/') send(200, 'text/html; charset=utf-8', PAGE)
    else if (path === '/hls.js') send(200, 'text/javascript', hlsJs)
    else if (path === '/favicon.ico') send(204, 'image/x-icon', '')
    else send(404, 'text/plain', 'not found\n')
  })
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve(server))
  })
}

// Runs inside the page. Must be self-contained: Playwright sends its source.
// Hls event payloads hold Fragment and Level objects with cycles, so only
// plain fields are passed to report().
function playerMain({ src, maxBuffer }) {
  const report = window.report
  const video = document.getElementById('video')
  const E = Hls.Events
  const bufferCap = maxBuffer ? { maxBufferLength: maxBuffer, maxMaxBufferLength: maxBuffer } : {}
  const hls = new Hls({ debug: false, ...bufferCap })
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
    report({ event: 'frag', type: f.type, url: f.url, level: f.level, sn: f.sn, bytes: f.stats.loaded })
  })
  hls.on(E.ERROR, (_, data) => {
    report({
      event: 'error',
      fatal: !!data.fatal,
      type: data.type,
      details: data.details,
      url: data.url || (data.frag && data.frag.url) || (data.context && data.context.url) || null,
      status: data.response ? data.response.code : null,
      message: data.error ? String(data.error.message || data.error) : (data.reason || null),
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
    })
  }, 1000)

  hls.attachMedia(video)
  hls.loadSource(src)
}

// What "done" needs from the page: seconds actually played, from the
// element's own record of played ranges.
function pageSummary() {
  const video = document.getElementById('video')
  let played = 0
  for (let i = 0; i < video.played.length; i++) played += video.played.end(i) - video.played.start(i)
  const hls = window.hls
  return {
    played_seconds: played,
    current_time: video.currentTime,
    pathway: hls && hls.levels && hls.levels[0] ? hls.levels[0].pathwayId : null,
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

let browser = null
let server = null
let finished = false

// Ends the run exactly once, from whichever path gets here first; the exit
// waits for stdout to take the last line.
async function finish(code, last) {
  if (finished) return
  finished = true
  if (last) emit(last)
  closed = true
  // A browser that hangs on close must not hold the exit hostage.
  await Promise.race([browser ? browser.close().catch(() => {}) : null, sleep(5000)])
  if (server) server.close()
  process.stdout.write('', () => process.exit(code))
}

const fatalHarness = (stage, err) => finish(2, { event: 'fatal-harness', stage, error: String((err && err.message) || err) })

// Stopped from outside (a SIGKILL needs nothing: Chromium exits when its
// pipe to us closes).
for (const [signal, n] of [['SIGINT', 2], ['SIGTERM', 15], ['SIGHUP', 1]]) {
  process.on(signal, () => finish(128 + n, { event: 'fatal-harness', stage: 'signal', error: signal }))
}

setTimeout(() => {
  // The browser may be wedged: make sure it goes with us.
  try {
    browser?.process?.()?.kill('SIGKILL')
  } catch {}
  finish(3, { event: 'fatal-harness', stage: 'hard-timeout', error: `no result after ${seconds + 30} s` })
}, (seconds + 30) * 1000)

async function main() {
  try {
    server = await startServer()
  } catch (e) {
    return fatalHarness('server', e)
  }
  const pageUrl = `http://127.0.0.1:${server.address().port}/`

  try {
    browser = await chromium.launch({
      executablePath: '/usr/bin/chromium',
      headless: true,
      args: CHROMIUM_ARGS,
      timeout: 30000,
      // Playwright's own handlers close the browser but leave this process
      // running to its end, to report a "done" it never saw; ours stop it.
      handleSIGINT: false,
      handleSIGTERM: false,
      handleSIGHUP: false,
    })
  } catch (e) {
    return fatalHarness('launch', e)
  }
  browser.on('disconnected', () => fatalHarness('browser', 'browser went away'))

  let page
  try {
    page = await browser.newPage()
    await page.exposeFunction('report', onReport)
    // hls.js's worker is a blob: URL; only real network requests count.
    const onRequest = async (req, failed) => {
      const url = req.url()
      if (!/^https?:/.test(url)) return
      const res = failed ? null : await req.response().catch(() => null)
      // These lines come a little late and out of order (after the body,
      // through Playwright); "started_ms" is when the request went out.
      const started = req.timing().startTime
      emit({
        event: 'request',
        url,
        host: hostOf(url),
        started_ms: started > 0 ? Math.round(started - t0) : null,
        method: req.method(),
        kind: req.resourceType(),
        status: res ? res.status() : null,
        failed,
        ...(failed ? { error: req.failure()?.errorText ?? null } : {}),
      })
    }
    page.on('requestfinished', (req) => onRequest(req, false))
    page.on('requestfailed', (req) => onRequest(req, true))
    // CORS refusals are explained only on the console, not to hls.js.
    page.on('console', (msg) => {
      if (msg.type() === 'error' || msg.type() === 'warning') emit({ event: 'console', level: msg.type(), text: msg.text() })
    })
    page.on('pageerror', (err) => emit({ event: 'console', level: 'pageerror', text: String(err) }))
    page.on('crash', () => fatalHarness('page', 'page crashed'))

    const res = await page.goto(pageUrl, { waitUntil: 'load', timeout: 15000 })
    if (!res || !res.ok()) throw new Error(`page answered ${res ? res.status() : 'nothing'}`)
    const caps = await page.evaluate(() => {
      const mse = window.MediaSource
      const ok = (t) => !!(mse && mse.isTypeSupported(t))
      return {
        hls_js: typeof Hls === 'function' ? Hls.version : null,
        hls_supported: typeof Hls === 'function' && Hls.isSupported(),
        steering_controller: typeof Hls === 'function' && !!Hls.DefaultConfig.contentSteeringController,
        mse_h264_aac: ok('video/mp4; codecs="avc1.64001f,mp4a.40.2"'),
        mse_h264: ok('video/mp4; codecs="avc1.64001f"'),
        mse_aac: ok('audio/mp4; codecs="mp4a.40.2"'),
      }
    })
    if (!caps.hls_js) throw new Error('hls.js did not load in the page')
    emit({ event: 'ready', page: pageUrl, browser: browser.version(), ...caps })
    await page.evaluate(playerMain, { src: mediaUrl, maxBuffer })
  } catch (e) {
    return fatalHarness('page', e)
  }

  await sleep(seconds * 1000)
  if (finished) return

  const summary = await Promise.race([page.evaluate(pageSummary).catch(() => null), sleep(5000).then(() => null)])
  await finish(0, {
    event: 'done',
    played_seconds: summary ? summary.played_seconds : null,
    current_time: summary ? summary.current_time : null,
    pathway: summary ? summary.pathway : null,
    frags_by_host: fragsByHost,
    fatal_errors: fatalErrors,
    errors,
  })
}

main().catch((e) => fatalHarness('harness', e))
