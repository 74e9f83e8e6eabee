// @tus/server with @tus/s3-store — the official Node tus server — on the
// same S3 (Garage) the platform uses, for the benchmark's comparison.
//
//   S3_ENDPOINT=… S3_ACCESS_KEY_ID=… S3_SECRET_ACCESS_KEY=… S3_BUCKET=… \
//   S3_REGION=… node tus_node_server.mjs PORT PART_SIZE
//
// Prints {"listening": port} once it accepts connections.
import http from 'node:http'
import { Server } from '@tus/server'
import { S3Store } from '@tus/s3-store'

const [port, partSize] = process.argv.slice(2).map(Number)
const env = (name, fallback) => {
  const v = process.env[name] || fallback
  if (!v) throw new Error(`${name} is not set`)
  return v
}

const datastore = new S3Store({
  partSize,
  useTags: false, // Garage does not implement object tagging
  s3ClientConfig: {
    bucket: env('S3_BUCKET', 'videos'),
    region: env('S3_REGION', 'garage'),
    endpoint: env('S3_ENDPOINT'),
    forcePathStyle: true,
    credentials: { accessKeyId: env('S3_ACCESS_KEY_ID'), secretAccessKey: env('S3_SECRET_ACCESS_KEY') },
    // As the platform does: not every S3-compatible server accepts the SDK's default extra checksums.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  },
})
const tus = new Server({ path: '/files', datastore })
http.createServer((req, res) => tus.handle(req, res)).listen(port, '127.0.0.1', () => {
  console.log(JSON.stringify({ listening: port }))
})
