// HLS playlists as a player reads them: the variants of a master playlist
// (with their pathway for content steering), and the init section and
// segments of a media playlist. Only what the player model needs.

// Resolves `uri` against the URL of the playlist it came from.
export function resolve(base, uri) {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(uri)) return uri;
  const origin = base.match(/^[a-z][a-z0-9+.-]*:\/\/[^/]+/i)[0];
  if (uri.startsWith('/')) return origin + uri;
  const dir = base.split('?')[0].replace(/[^/]*$/, '');
  return dir + uri;
}

// Attribute list of a tag (`NAME=value,NAME="quoted, value"`).
export function attributes(tag) {
  const body = tag.slice(tag.indexOf(':') + 1);
  const out = {};
  const re = /([A-Z0-9-]+)=("[^"]*"|[^,]*)/g;
  let m;
  while ((m = re.exec(body)) !== null) {
    out[m[1]] = m[2].startsWith('"') ? m[2].slice(1, -1) : m[2];
  }
  return out;
}

// { variants: [{bandwidth, height, pathway, audio, url}], audio: {group: url},
//   steering: {uri, pathway} | null }. Audio-only variants are left out
// when there is video, as players leave them out.
export function parseMaster(text, url) {
  if (!text.startsWith('#EXTM3U')) throw new Error(`not a playlist: ${url}`);
  const lines = text.split('\n').map((l) => l.trim()).filter((l) => l.length > 0);
  const variants = [];
  const audio = {};
  let steering = null;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (line.startsWith('#EXT-X-CONTENT-STEERING:')) {
      const a = attributes(line);
      steering = { uri: resolve(url, a['SERVER-URI']), pathway: a['PATHWAY-ID'] || '.' };
    } else if (line.startsWith('#EXT-X-MEDIA:')) {
      const a = attributes(line);
      if (a.TYPE === 'AUDIO' && a.URI && (a.DEFAULT === 'YES' || !audio[a['GROUP-ID']])) audio[a['GROUP-ID']] = resolve(url, a.URI);
    } else if (line.startsWith('#EXT-X-STREAM-INF:') && i + 1 < lines.length && !lines[i + 1].startsWith('#')) {
      const a = attributes(line);
      const res = (a.RESOLUTION || '0x0').split('x');
      variants.push({
        bandwidth: Number(a.BANDWIDTH),
        height: Number(res[1] || 0),
        pathway: a['PATHWAY-ID'] || '.',
        audio: a.AUDIO || null,
        url: resolve(url, lines[i + 1]),
      });
      i++;
    }
  }
  const video = variants.filter((v) => v.height > 0);
  const playable = video.length > 0 ? video : variants;
  if (playable.length === 0) throw new Error(`no variants in ${url}`);
  playable.sort((a, b) => a.bandwidth - b.bandwidth);
  return { variants: playable, audio, steering };
}

// { init: url | null, segments: [{url, duration}], ended, encrypted }
export function parseMedia(text, url) {
  if (!text.startsWith('#EXTM3U')) throw new Error(`not a playlist: ${url}`);
  const lines = text.split('\n').map((l) => l.trim()).filter((l) => l.length > 0);
  let init = null;
  let encrypted = false;
  let duration = 0;
  const segments = [];
  for (const line of lines) {
    if (line.startsWith('#EXT-X-MAP:')) init = resolve(url, attributes(line).URI);
    else if (line.startsWith('#EXT-X-KEY:') && attributes(line).METHOD !== 'NONE') encrypted = true;
    else if (line.startsWith('#EXTINF:')) duration = parseFloat(line.slice(8));
    else if (!line.startsWith('#')) {
      segments.push({ url: resolve(url, line), duration });
      duration = 0;
    }
  }
  return { init, segments, ended: lines.includes('#EXT-X-ENDLIST'), encrypted };
}
