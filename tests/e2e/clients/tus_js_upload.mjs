// Uploads a file with tus-js-client, the official JavaScript tus client,
// unchanged, under Node.
//
//   node tus_js_upload.mjs ENDPOINT FILE [--chunk-size N] [--parallel N]
//        [--resume-url URL] [--title T] [--kill-at FRACTION]
//
// API_KEY in the environment, if set, is sent as `Authorization: Bearer …`
// on every request (tus-js-client's `headers` option); unset, none is sent.
//
// Prints JSON lines: {"url"} once the upload URL is known, {"done"} at the
// end, or {"error", "status"} (the HTTP status, if there was an answer) and
// exit status 1. --kill-at SIGKILLs this process once that fraction of the file has
// been handed to the socket: a real cut in the middle of a PATCH, after
// which a fresh process started with --resume-url continues the upload.
import fs from 'node:fs'
import * as tus from 'tus-js-client'

const [endpoint, file, ...rest] = process.argv.slice(2)
const opt = (name, fallback) => {
  const i = rest.indexOf(`--${name}`)
  return i >= 0 ? rest[i + 1] : fallback
}
const chunkSize = Number(opt('chunk-size', Infinity))
const parallel = Number(opt('parallel', 1))
const resumeUrl = opt('resume-url', null)
const killAt = Number(opt('kill-at', 0))
const title = opt('title', 'tus-js-client upload')
const headers = process.env.API_KEY ? { Authorization: `Bearer ${process.env.API_KEY}` } : {}

let announced = false
const announce = (url) => {
  if (!announced && url) {
    announced = true
    console.log(JSON.stringify({ url }))
  }
}

const upload = new tus.Upload(fs.createReadStream(file), {
  endpoint,
  headers,
  uploadUrl: resumeUrl,
  chunkSize,
  parallelUploads: parallel,
  metadata: { filename: title, filetype: 'video/x-matroska' },
  // Generous: the service-restart test relies on the client's own retries.
  retryDelays: [0, 500, 1000, 2000, 3000, 5000, 5000, 5000, 5000, 5000],
  storeFingerprintForResuming: false,
  onUploadUrlAvailable() {
    announce(upload.url)
  },
  onProgress(sent, total) {
    if (killAt > 0 && sent >= killAt * total) {
      process.kill(process.pid, 'SIGKILL')
    }
  },
  onSuccess() {
    announce(upload.url)
    console.log(JSON.stringify({ done: upload.url }))
  },
  onError(err) {
    console.error(String(err))
    const status = err.originalResponse ? err.originalResponse.getStatus() : null
    console.log(JSON.stringify({ error: String(err), status }))
    process.exit(1)
  },
})
upload.start()
