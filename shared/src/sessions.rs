//! Viewer sessions, in Redis: issued by the origin with a master playlist,
//! kept alive by every fetch that carries the session id (origin or edge),
//! and counted per video, region, serving node and pathway.
//!
//! Redis holds them because every origin and edge must see the same counts.
//! A session is "live" while it fetched within the TTL; liveness is a sorted
//! set per dimension scored by last-seen time, pruned whenever touched or
//! counted, so no set grows past the live sessions plus one TTL of dead ones.
//! Losing Redis loses counts, never video.
//!
//! A view is a session, and a client gets one session per video per window
//! ([`Sessions::issue_once`]): fetching the master again without its id
//! returns the same session, so a loop of fetches counts one view.

use std::collections::BTreeMap;
use std::sync::LazyLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::AsyncCommands;
use serde::Serialize;
use uuid::Uuid;

use crate::cache::Cache;

/// A session id: 32 lowercase hex digits. Parsed at the boundary so a key
/// never contains what a client typed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionId(String);

impl SessionId {
    pub fn new() -> Self {
        Self(Uuid::new_v4().simple().to_string())
    }
    pub fn parse(raw: &str) -> Option<Self> {
        (raw.len() == 32 && raw.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))).then(|| Self(raw.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for SessionId {
    fn default() -> Self {
        Self::new()
    }
}

/// The region of viewers whose hint names no configured region, or none.
pub const OTHER_REGION: &str = "other";

/// The regions viewers are counted in, from configuration. A hint naming
/// anything else, or nothing, counts as [`OTHER_REGION`]: a region becomes
/// Redis keys and a Prometheus label value, so a client must not be able to
/// mint new ones by inventing names (they would stay forever).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Regions(Vec<String>);

impl std::str::FromStr for Regions {
    type Err = String;
    /// `eu-west,us-east`: names of `[A-Za-z0-9._-]`, at most 64 characters.
    fn from_str(raw: &str) -> Result<Self, String> {
        let names: Vec<String> = raw.split(',').map(str::trim).filter(|r| !r.is_empty()).map(str::to_owned).collect();
        if let Some(bad) = names.iter().find(|r| !crate::extract::is_token(r, 64)) {
            return Err(format!("region {bad:?} must be [A-Za-z0-9._-]+, at most 64 characters"));
        }
        if names.iter().any(|r| r == OTHER_REGION) {
            return Err(format!("\"{OTHER_REGION}\" is where unlisted regions go; it cannot be listed"));
        }
        Ok(Self(names))
    }
}

impl Regions {
    /// The label for a viewer's region hint: a configured region, else "other".
    pub fn label(&self, hint: Option<&str>) -> String {
        match hint.map(str::trim) {
            Some(h) if self.0.iter().any(|r| r == h) => h.to_owned(),
            _ => OTHER_REGION.to_owned(),
        }
    }
}

/// What the origin decided for a session when it was issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: SessionId,
    pub video: Uuid,
    pub region: String,
    pub pathway: String,
    /// Video rungs left out of its master playlist (the bitrate cap).
    pub dropped_rungs: usize,
}

/// What [`Sessions::issue_once`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Issued {
    /// The session asked for was registered and counted as a view.
    New,
    /// The client already had this one for the video: no new view.
    Again(Session),
}

/// Live counts for the viewers API.
#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct Overview {
    pub total: u64,
    pub by_node: BTreeMap<String, u64>,
    pub by_region: BTreeMap<String, u64>,
}

/// One of the live sets a session counts in.
#[derive(Debug, Clone, Copy)]
pub enum Live<'a> {
    All,
    Video(Uuid),
    Region(&'a str),
    /// A region's sessions on one pathway.
    Pathway(&'a str, &'a str),
    Node(&'a str),
}

impl Live<'_> {
    fn key(&self) -> String {
        match self {
            Live::All => "live:all".into(),
            Live::Video(v) => format!("live:video:{v}"),
            Live::Region(r) => format!("live:region:{r}"),
            Live::Pathway(r, p) => format!("live:path:{r}:{p}"),
            Live::Node(n) => format!("live:node:{n}"),
        }
    }
}

#[derive(Clone)]
pub struct Sessions {
    cache: Cache,
    ttl: Duration,
}

/// Keeps a session alive: refreshes its hash and its score in every live
/// set it belongs to, pruning each set on the way. An unknown (expired or
/// forged) session counts nowhere. Hashed once: it runs on every heartbeat.
static TOUCH: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(r#"
local p, sid, now, cutoff, node, keep = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[6])
local s = redis.call('HMGET', p..':session:'..sid, 'video', 'region', 'pathway')
if not s[1] then return 0 end
redis.call('EXPIRE', p..':session:'..sid, keep)
local sets = {p..':live:all', p..':live:video:'..s[1], p..':live:region:'..s[2], p..':live:path:'..s[2]..':'..s[3]}
if node ~= '' then
  table.insert(sets, p..':live:node:'..node)
  redis.call('SADD', p..':nodes', node)
end
for _, k in ipairs(sets) do
  redis.call('ZADD', k, now, sid)
  redis.call('ZREMRANGEBYSCORE', k, '-inf', cutoff)
  redis.call('PEXPIRE', k, keep * 1000)
end
return 1
"#));

/// Registers a session and counts its view, in one step. With a claim key
/// (one per client and video), a claim whose session still exists returns
/// that session's id instead: two first fetches at once still make one
/// session and one view.
static ISSUE: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(r#"
local p, sid, video, region, pathway, dropped, keep, claim, window = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], tonumber(ARGV[7]), ARGV[8], tonumber(ARGV[9])
if claim ~= '' then
  local prior = redis.call('GET', claim)
  if prior and redis.call('EXISTS', p..':session:'..prior) == 1 then return prior end
  redis.call('SET', claim, sid, 'EX', window)
end
redis.call('HSET', p..':session:'..sid, 'video', video, 'region', region, 'pathway', pathway, 'dropped', dropped)
redis.call('EXPIRE', p..':session:'..sid, keep)
redis.call('INCR', p..':views:'..video)
redis.call('SADD', p..':regions', region)
return sid
"#));

/// Moves a session to another pathway: out of the old pathway's live set,
/// into the new one's.
static MOVE: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(r#"
local p, sid, to, now = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local s = redis.call('HMGET', p..':session:'..sid, 'region', 'pathway')
if not s[1] then return 0 end
if s[2] == to then return 1 end
redis.call('HSET', p..':session:'..sid, 'pathway', to)
redis.call('ZREM', p..':live:path:'..s[1]..':'..s[2], sid)
redis.call('ZADD', p..':live:path:'..s[1]..':'..to, now, sid)
return 1
"#));

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl Sessions {
    pub fn new(cache: Cache, ttl: Duration) -> Self {
        Self { cache, ttl }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn key(&self, rest: &str) -> String {
        format!("{}:{rest}", self.cache.prefix())
    }

    /// A session hash outlives liveness, so a viewer back from a long pause
    /// keeps its id and decisions (and counts again once it fetches).
    fn keep_secs(&self) -> u64 {
        (self.ttl.as_secs() * 20).max(3600)
    }

    /// Registers a new session and counts a view of its video. No serving
    /// node yet: the edge that will relay it is not known when it is issued.
    pub async fn issue(&self, s: &Session) -> anyhow::Result<()> {
        self.register(s, None).await.map(|_| ())
    }

    /// [`Sessions::issue`], once per client and video per `window`: while
    /// the client's last session for this video exists, asking again gets
    /// that session back and counts no view. `client` is a stable key of
    /// the viewer (its address, see `ratelimit::Client`).
    pub async fn issue_once(&self, s: &Session, client: &str, window: Duration) -> anyhow::Result<Issued> {
        let claim = self.key(&format!("issued:{}:{client}", s.video));
        let sid = self.register(s, Some((claim, window.as_secs().max(1)))).await?;
        if sid == s.id.as_str() {
            return Ok(Issued::New);
        }
        let prior = SessionId::parse(&sid).ok_or_else(|| anyhow::anyhow!("claim holds {sid:?}, not a session id"))?;
        // Gone between the script and now (it outlives its claim by far): a new one.
        match self.get(&prior).await? {
            Some(session) => Ok(Issued::Again(session)),
            None => self.issue(s).await.map(|_| Issued::New),
        }
    }

    async fn register(&self, s: &Session, claim: Option<(String, u64)>) -> anyhow::Result<String> {
        let mut c = self.cache.connection().await?;
        let (claim, window) = claim.unwrap_or_default();
        let sid: String = ISSUE
            .arg(self.cache.prefix())
            .arg(s.id.as_str())
            .arg(s.video.to_string())
            .arg(&s.region)
            .arg(&s.pathway)
            .arg(s.dropped_rungs)
            .arg(self.keep_secs())
            .arg(claim)
            .arg(window)
            .invoke_async(&mut c)
            .await?;
        if sid == s.id.as_str() {
            self.touch(&s.id, "").await?;
        }
        Ok(sid)
    }

    /// The session, if it exists.
    pub async fn get(&self, id: &SessionId) -> anyhow::Result<Option<Session>> {
        let mut c = self.cache.connection().await?;
        let (video, region, pathway, dropped): (Option<String>, Option<String>, Option<String>, Option<usize>) =
            redis::cmd("HMGET").arg(self.key(&format!("session:{}", id.as_str()))).arg(&["video", "region", "pathway", "dropped"]).query_async(&mut c).await?;
        let (Some(video), Some(region), Some(pathway)) = (video, region, pathway) else { return Ok(None) };
        let Ok(video) = video.parse() else { return Ok(None) };
        Ok(Some(Session { id: id.clone(), video, region, pathway, dropped_rungs: dropped.unwrap_or(0) }))
    }

    /// A fetch by this session, served by `node` ("" for none).
    pub async fn touch(&self, id: &SessionId, node: &str) -> anyhow::Result<()> {
        let mut c = self.cache.connection().await?;
        let now = now_ms();
        let cutoff = now.saturating_sub(self.ttl.as_millis() as u64);
        let _: i64 = TOUCH
            .arg(self.cache.prefix())
            .arg(id.as_str())
            .arg(now)
            .arg(cutoff)
            .arg(node)
            .arg(self.keep_secs())
            .invoke_async(&mut c)
            .await?;
        Ok(())
    }

    /// Moves a session to `pathway` (steering).
    pub async fn move_to(&self, id: &SessionId, pathway: &str) -> anyhow::Result<()> {
        let mut c = self.cache.connection().await?;
        let _: i64 = MOVE.arg(self.cache.prefix()).arg(id.as_str()).arg(pathway).arg(now_ms()).invoke_async(&mut c).await?;
        Ok(())
    }

    /// Live sessions in each of `sets`, each pruned first: one round trip
    /// however many sets (overview and steering ask for several).
    pub async fn live(&self, sets: &[Live<'_>]) -> anyhow::Result<Vec<u64>> {
        let cutoff = now_ms().saturating_sub(self.ttl.as_millis() as u64);
        let mut pipe = redis::pipe();
        for set in sets {
            let key = self.key(&set.key());
            pipe.zrembyscore(&key, "-inf", cutoff).ignore().zcard(&key);
        }
        Ok(pipe.query_async(&mut self.cache.connection().await?).await?)
    }

    pub async fn views(&self, video: Uuid) -> anyhow::Result<u64> {
        let mut c = self.cache.connection().await?;
        let n: Option<u64> = c.get(self.key(&format!("views:{video}"))).await?;
        Ok(n.unwrap_or(0))
    }

    /// Live counts by node and region.
    pub async fn overview(&self) -> anyhow::Result<Overview> {
        let mut c = self.cache.connection().await?;
        let (nodes, regions): (Vec<String>, Vec<String>) = redis::pipe().smembers(self.key("nodes")).smembers(self.key("regions")).query_async(&mut c).await?;
        let sets: Vec<Live> = std::iter::once(Live::All).chain(nodes.iter().map(|n| Live::Node(n))).chain(regions.iter().map(|r| Live::Region(r))).collect();
        let counts = self.live(&sets).await?;
        Ok(Overview {
            total: counts[0],
            by_node: nodes.iter().cloned().zip(counts[1..].iter().copied()).collect(),
            by_region: regions.iter().cloned().zip(counts[1 + nodes.len()..].iter().copied()).collect(),
        })
    }

    /// A shared flag (e.g. "secondary active in region r"), for every origin to agree on.
    pub async fn flag(&self, name: &str) -> anyhow::Result<bool> {
        let mut c = self.cache.connection().await?;
        let v: Option<String> = c.get(self.key(&format!("flag:{name}"))).await?;
        Ok(v.as_deref() == Some("1"))
    }

    pub async fn set_flag(&self, name: &str, on: bool) -> anyhow::Result<()> {
        let mut c = self.cache.connection().await?;
        let _: () = c.set(self.key(&format!("flag:{name}")), if on { "1" } else { "0" }).await?;
        Ok(())
    }
}

/// Keep-alives from one serving node, throttled: at most one Redis round
/// trip per session every few seconds, off the request path, so a busy edge
/// does not turn every segment into a Redis write. Also this node's own
/// live count, kept locally, for its metrics.
#[derive(Clone)]
pub struct Heartbeats {
    sessions: Sessions,
    node: String,
    recent: moka::sync::Cache<SessionId, ()>,
    live: moka::sync::Cache<SessionId, ()>,
}

impl Heartbeats {
    pub fn new(sessions: Sessions, node: &str) -> Self {
        let ttl = sessions.ttl();
        let every = (ttl / 4).clamp(Duration::from_millis(250), Duration::from_secs(5));
        Self {
            node: node.to_owned(),
            recent: moka::sync::Cache::builder().max_capacity(1_000_000).time_to_live(every).build(),
            live: moka::sync::Cache::builder().max_capacity(1_000_000).time_to_live(ttl).build(),
            sessions,
        }
    }

    pub fn beat(&self, sid: &SessionId) {
        self.live.insert(sid.clone(), ());
        if self.recent.contains_key(sid) {
            return;
        }
        self.recent.insert(sid.clone(), ());
        let (sessions, node, sid) = (self.sessions.clone(), self.node.clone(), sid.clone());
        tokio::spawn(async move {
            if let Err(e) = sessions.touch(&sid, &node).await {
                tracing::warn!(error = format!("{e:#}"), "session keep-alive not recorded");
            }
        });
    }

    /// Sessions that fetched from this node within the TTL.
    pub fn live_here(&self) -> u64 {
        self.live.run_pending_tasks();
        self.live.entry_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_are_checked_at_the_boundary() {
        let id = SessionId::new();
        assert_eq!(SessionId::parse(id.as_str()), Some(id));
        assert_eq!(SessionId::parse("../x"), None);
        assert_eq!(SessionId::parse(&"A".repeat(32)), None);
    }

    #[test]
    fn regions_come_from_the_allowlist_and_anything_else_is_other() {
        let regions: Regions = "eu-west, us-east".parse().unwrap();
        assert_eq!(regions.label(Some("eu-west")), "eu-west");
        assert_eq!(regions.label(Some("mars")), OTHER_REGION);
        assert_eq!(regions.label(Some("a:b")), OTHER_REGION);
        assert_eq!(regions.label(None), OTHER_REGION);
        assert_eq!(Regions::default().label(Some("eu-west")), OTHER_REGION);
        assert!("eu west".parse::<Regions>().is_err());
        assert!("eu,other".parse::<Regions>().is_err());
    }
}
