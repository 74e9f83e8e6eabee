// The harness both player scripts share (hls_play.mjs, shaka_play.mjs): a
// page served from this process's own 127.0.0.1 origin, headless Chromium
// (Debian's /usr/bin/chromium, driven by playwright-core), one JSON line a
// line on stdout, a bounded run. The players differ only in the library
// the page loads and in the function that drives it, which each script
// hands to run().
//
// The page never comes from the media's origin, so every playlist,
// manifest, segment and steering request is a real cross-origin request
// and the media servers' CORS headers are exercised.
//
// Lines every player writes, each with "event" and "ms" (since this process
// started):
//   ready    page, browser, and whatever the script's probe returned
//   request  url, host, status, x_cache, failed, error, method, kind, started_ms:
//            every http(s) request the page made, as the browser saw it
//   console  level, text: page errors and warnings (CORS refusals show here)
//   done     played_seconds, current_time, requests, failed_requests,
//            plus the script's own summary fields
//
// Exits 0 after --seconds of wall time from the start of playback, whatever
// the player ran into: judging playback is the test's job. Exits non-zero
// after a {"event":"fatal-harness", stage, error} line when the harness
// itself failed (browser did not start or went away, page did not load),
// on SIGINT/SIGTERM/SIGHUP, or at the hard timeout of seconds + 30 s.
import fs from 'node:fs'
import http from 'node:http'
import { chromium } from 'playwright-core'

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
export const emit = (obj) => {
  if (!closed) process.stdout.write(JSON.stringify({ ...obj, ms: Date.now() - t0 }) + '\n')
}

export const hostOf = (url) => {
  try {
    return new URL(url).host
  } catch {
    return null
  }
}

// "--name value" from the command line, or the fallback.
export function option(name, fallback) {
  const args = process.argv.slice(2)
  const i = args.indexOf(`--${name}`)
  return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback
}

export const flag = (name) => process.argv.slice(2).includes(`--${name}`)

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

// The HTML page: a muted video element and the player's script, nothing
// else; the player logic arrives through page.evaluate.
function startServer(library, title) {
  const script = fs.readFileSync(library)
  const page = `<!doctype html>
<meta charset="utf-8">
<title>${title}</title>
<video id="video" muted playsinline></video>
<script src="/player.js"></script>
`
  const server = http.createServer((req, res) => {
    const path = req.url.split('?')[0]
    const send = (status, type, body) => {
      res.writeHead(status, { 'Content-Type': type, 'Cache-Control': 'no-store' })
      res.end(body)
    }
    if (path === '/') send(200, 'text/html; charset=utf-8', page)
    else if (path === '/player.js') send(200, 'text/javascript', script)
    else if (path === '/favicon.ico') send(204, 'image/x-icon', '')
    else send(404, 'text/plain', 'not found\n')
  })
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve(server))
  })
}

// What every "done" line needs from the page: seconds actually played, from
// the element's own record of played ranges.
function playedSummary() {
  const video = document.getElementById('video')
  let played = 0
  for (let i = 0; i < video.played.length; i++) played += video.played.end(i) - video.played.start(i)
  return { played_seconds: played, current_time: video.currentTime }
}

// Runs one player for `seconds`:
//   library   path of the player's script, served to the page as /player.js
//   probe     page function: capabilities for the "ready" line; it must
//             return { loaded: true } when the library loaded
//   main      page function started with mainArg; it reports through
//             window.report(obj), which reaches onReport here
//   onReport  called with each reported object before it is written (to
//             tally); may add fields to it
//   summary   page function: extra "done" fields read from the page
//   done      () => extra "done" fields kept on this side (tallies survive
//             a page that has stopped answering)
export async function run({ title, library, seconds, probe, main, mainArg, onReport, summary, done }) {
  let browser = null
  let server = null
  let finished = false
  let requests = 0
  let failedRequests = 0

  // Ends the run exactly once, from whichever path gets here first; the
  // exit waits for stdout to take the last line.
  const finish = async (code, last) => {
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

  const body = async () => {
    try {
      server = await startServer(library, title)
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
      await page.exposeFunction('report', (ev) => {
        onReport?.(ev)
        emit(ev)
      })
      // Players' workers are blob: URLs; only real network requests count.
      const onRequest = async (req, failed) => {
        const url = req.url()
        if (!/^https?:/.test(url)) return
        const res = failed ? null : await req.response().catch(() => null)
        const status = res ? res.status() : null
        requests++
        if (failed || status === null || status >= 400) failedRequests++
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
          status,
          // Which cache state the edge answered from (its X-Cache header).
          x_cache: res ? (res.headers()['x-cache'] ?? null) : null,
          failed,
          ...(failed ? { error: req.failure()?.errorText ?? null } : {}),
        })
      }
      page.on('requestfinished', (req) => onRequest(req, false))
      page.on('requestfailed', (req) => onRequest(req, true))
      // CORS refusals are explained only on the console, not to the player.
      page.on('console', (msg) => {
        if (msg.type() === 'error' || msg.type() === 'warning') emit({ event: 'console', level: msg.type(), text: msg.text() })
      })
      page.on('pageerror', (err) => emit({ event: 'console', level: 'pageerror', text: String(err) }))
      page.on('crash', () => fatalHarness('page', 'page crashed'))

      const res = await page.goto(pageUrl, { waitUntil: 'load', timeout: 15000 })
      if (!res || !res.ok()) throw new Error(`page answered ${res ? res.status() : 'nothing'}`)
      const caps = await page.evaluate(probe)
      if (!caps.loaded) throw new Error(`${title}: the player's library did not load in the page`)
      emit({ event: 'ready', page: pageUrl, browser: browser.version(), ...caps })
      await page.evaluate(main, mainArg)
    } catch (e) {
      return fatalHarness('page', e)
    }

    await sleep(seconds * 1000)
    if (finished) return

    const fromPage = await Promise.race([
      page.evaluate(playedSummary).then(async (played) => ({ ...played, ...(summary ? await page.evaluate(summary) : {}) })).catch(() => null),
      sleep(5000).then(() => null),
    ])
    await finish(0, {
      event: 'done',
      ...(fromPage || { played_seconds: null, current_time: null }),
      requests,
      failed_requests: failedRequests,
      ...(done ? done() : {}),
    })
  }
  await body().catch((e) => fatalHarness('harness', e))
}
