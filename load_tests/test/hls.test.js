// Playlist parsing as the player model relies on it.
import test from 'node:test';
import assert from 'node:assert/strict';
import { parseMaster, parseMedia, resolve } from '../lib/hls.js';

const master = `#EXTM3U
#EXT-X-CONTENT-STEERING:SERVER-URI="/steering/v?sid=1",PATHWAY-ID="primary"
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="audio-primary",NAME="Main",DEFAULT=YES,URI="audio/index.m3u8?sid=1"
#EXT-X-STREAM-INF:BANDWIDTH=2000000,CODECS="avc1.64001f,mp4a.40.2",RESOLUTION=1280x720,AUDIO="audio-primary",PATHWAY-ID="primary"
720p/index.m3u8?sid=1
#EXT-X-STREAM-INF:BANDWIDTH=490267,CODECS="avc1.64001e,mp4a.40.2",RESOLUTION=640x360,AUDIO="audio-primary",PATHWAY-ID="primary"
360p/index.m3u8?sid=1
#EXT-X-STREAM-INF:BANDWIDTH=125809,CODECS="mp4a.40.2",AUDIO="audio-primary",PATHWAY-ID="primary"
audio/index.m3u8?sid=1
#EXT-X-STREAM-INF:BANDWIDTH=490267,RESOLUTION=640x360,AUDIO="audio-secondary",PATHWAY-ID="secondary"
http://127.0.0.1:8013/hls/v/360p/index.m3u8?sid=1
`;

test('variants sorted by bandwidth, audio-only left out, quoted commas kept, steering and audio resolved', () => {
  const m = parseMaster(master, 'http://h:8080/hls/v/master.m3u8');
  assert.deepEqual(m.variants.map((v) => [v.bandwidth, v.height, v.pathway]), [[490267, 360, 'primary'], [490267, 360, 'secondary'], [2000000, 720, 'primary']]);
  assert.equal(m.variants[2].url, 'http://h:8080/hls/v/720p/index.m3u8?sid=1');
  assert.equal(m.variants[1].url, 'http://127.0.0.1:8013/hls/v/360p/index.m3u8?sid=1');
  assert.deepEqual(m.steering, { uri: 'http://h:8080/steering/v?sid=1', pathway: 'primary' });
  assert.equal(m.audio['audio-primary'], 'http://h:8080/hls/v/audio/index.m3u8?sid=1');
});

test('a media playlist gives its init section, segments with durations, and whether it ended', () => {
  const p = parseMedia('#EXTM3U\n#EXT-X-MAP:URI="init.mp4"\n#EXTINF:6.000,\nseg_00001.m4s\n#EXTINF:2.5,\nseg_00002.m4s\n#EXT-X-ENDLIST\n', 'http://h/hls/v/360p/index.m3u8?sid=1');
  assert.equal(p.init, 'http://h/hls/v/360p/init.mp4');
  assert.deepEqual(p.segments.map((s) => s.duration), [6, 2.5]);
  assert.equal(p.ended, true);
  assert.equal(p.encrypted, false);
});

test('something that is not a playlist is refused, not played', () => {
  assert.throws(() => parseMaster('<html>', 'http://h/x'), /not a playlist/);
  assert.equal(resolve('http://h/a/b.m3u8', '/c'), 'http://h/c');
});
