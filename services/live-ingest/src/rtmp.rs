//! The RTMP listener: handshake and session protocol by `rml_rtmp` (sans-IO;
//! we own the sockets), one task per connection. A connection may publish
//! one stream on app `live` with its stream key; refusals (wrong app, wrong
//! key, a second publisher, an unsupported codec, an ingest over the
//! limits, silence) are answered at the RTMP level where the protocol has
//! an answer (a rejected connect or publish), otherwise by closing, and
//! always logged and counted by reason.
//!
//! The publisher's media goes to the encoder's bounded feed; when it is
//! full the connection stops reading, so TCP pushes back on the publisher.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{ServerSession, ServerSessionConfig, ServerSessionEvent, ServerSessionResult, StreamMetadata};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::encoder::{Encoder, FEED_TAGS};
use crate::flv::{Kind, Tag};
use crate::input::{Input, OverLimit};
use crate::on_air::{OnAir, Publishing, Refusal};

/// The one RTMP application name publishers use (`rtmp://host/live/KEY`).
pub const APP: &str = "live";
/// A connection that has not finished its handshake and connect in this long is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections at once. Anyone may connect before the key is checked, so
/// the port would otherwise take as many tasks and buffers as a caller
/// opens; a publisher over the cap is closed at once (and counted).
const MAX_CONNECTIONS: usize = 256;

pub async fn serve(listener: TcpListener, on_air: OnAir) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        match listener.accept().await {
            Ok((socket, peer)) => {
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    on_air.refuse(Refusal::TooManyConnections);
                    tracing::warn!(%peer, "RTMP connection refused: {MAX_CONNECTIONS} connections already open");
                    continue;
                };
                let on_air = on_air.clone();
                tokio::spawn(async move {
                    let _slot = slot;
                    let _ = socket.set_nodelay(true);
                    match Connection::new(socket, peer, on_air).run().await {
                        Ok(()) => tracing::info!(%peer, "RTMP connection closed"),
                        Err(why) => tracing::warn!(%peer, why, "RTMP connection dropped"),
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "RTMP accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

struct Live {
    publishing: Publishing,
    feed: Option<mpsc::Sender<Tag>>,
    encoder: Option<tokio::task::JoinHandle<Result<(), String>>>,
    /// Codec headers (and the first audio) before the first key frame.
    pending: Vec<Tag>,
    saw_audio: bool,
    checked: [bool; 2],
    input: Input,
}

struct Connection {
    socket: TcpStream,
    peer: SocketAddr,
    on_air: OnAir,
    session: Option<ServerSession>,
    metadata: Option<StreamMetadata>,
    live: Option<Live>,
    last_media: Instant,
}

type Outcome = Result<(), String>;

impl Connection {
    fn new(socket: TcpStream, peer: SocketAddr, on_air: OnAir) -> Self {
        Self { socket, peer, on_air, session: None, metadata: None, live: None, last_media: Instant::now() }
    }

    async fn run(mut self) -> Outcome {
        let rest = tokio::time::timeout(HANDSHAKE_TIMEOUT, self.handshake()).await.map_err(|_| "handshake timed out".to_string())??;
        let (session, results) = ServerSession::new(ServerSessionConfig::new()).map_err(|e| format!("session: {e:?}"))?;
        self.session = Some(session);
        self.results(results).await?;
        self.input(&rest).await?;
        let mut buf = vec![0u8; 64 << 10];
        let idle = self.on_air.settings.idle_timeout.0;
        loop {
            let waited = self.last_media.elapsed();
            let left = idle.checked_sub(waited).unwrap_or_default();
            let n = match tokio::time::timeout(left, self.socket.read(&mut buf)).await {
                Ok(Ok(0)) => return Ok(()),
                Ok(Ok(n)) => n,
                Ok(Err(e)) => return Err(format!("read: {e}")),
                Err(_) => return self.refuse(Refusal::Idle, &format!("no media for {idle:?}")),
            };
            self.input(&buf[..n]).await?;
            if self.live.as_ref().and_then(|l| l.encoder.as_ref()).is_some_and(|h| h.is_finished()) {
                let handle = self.live.as_mut().and_then(|l| l.encoder.take()).expect("checked");
                let why = match handle.await {
                    Ok(Ok(())) => None,
                    Ok(Err(why)) => Some(why),
                    Err(e) => Some(e.to_string()),
                };
                if let Some(why) = why {
                    return self.refuse(Refusal::EncoderFailed, &why);
                }
            }
        }
    }

    async fn handshake(&mut self) -> Result<Vec<u8>, String> {
        let mut hs = Handshake::new(PeerType::Server);
        let mut buf = vec![0u8; 4096];
        loop {
            let n = self.socket.read(&mut buf).await.map_err(|e| format!("handshake read: {e}"))?;
            if n == 0 {
                return Err("closed during the handshake".into());
            }
            match hs.process_bytes(&buf[..n]).map_err(|e| format!("handshake: {e:?}"))? {
                HandshakeProcessResult::InProgress { response_bytes } => self.write(&response_bytes).await?,
                HandshakeProcessResult::Completed { response_bytes, remaining_bytes } => {
                    self.write(&response_bytes).await?;
                    return Ok(remaining_bytes);
                }
            }
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> Outcome {
        self.socket.write_all(bytes).await.map_err(|e| format!("write: {e}"))
    }

    async fn input(&mut self, bytes: &[u8]) -> Outcome {
        if bytes.is_empty() {
            return Ok(());
        }
        let results = self.session.as_mut().expect("session after handshake").handle_input(bytes).map_err(|e| format!("RTMP: {e:?}"))?;
        self.results(results).await
    }

    async fn results(&mut self, results: Vec<ServerSessionResult>) -> Outcome {
        for r in results {
            match r {
                ServerSessionResult::OutboundResponse(p) => self.write(&p.bytes).await?,
                ServerSessionResult::RaisedEvent(e) => Box::pin(self.event(e)).await?,
                ServerSessionResult::UnhandleableMessageReceived(_) => {}
            }
        }
        Ok(())
    }

    async fn respond(&mut self, r: Result<Vec<ServerSessionResult>, rml_rtmp::sessions::ServerSessionError>) -> Outcome {
        let results = r.map_err(|e| format!("RTMP: {e:?}"))?;
        Box::pin(self.results(results)).await
    }

    fn session(&mut self) -> &mut ServerSession {
        self.session.as_mut().expect("session after handshake")
    }

    async fn event(&mut self, e: ServerSessionEvent) -> Outcome {
        match e {
            ServerSessionEvent::ConnectionRequested { request_id, app_name } => {
                if app_name != APP {
                    let r = self.session().reject_request(request_id, "NetConnection.Connect.Rejected", "unknown application; publish to rtmp://host/live/KEY");
                    self.respond(r).await?;
                    return self.refuse(Refusal::WrongApp, &format!("app {app_name:?}"));
                }
                let r = self.session().accept_request(request_id);
                self.respond(r).await
            }
            ServerSessionEvent::PublishStreamRequested { request_id, stream_key, .. } => {
                if self.live.is_some() {
                    return Err("a second publish on one connection".into());
                }
                match self.on_air.publish(&stream_key).await {
                    Ok(publishing) => {
                        tracing::info!(peer = %self.peer, stream = %publishing.broadcast.stream.id, broadcast = %publishing.broadcast.id, resumed = publishing.resumed, "publisher accepted");
                        self.live = Some(Live { publishing, feed: None, encoder: None, pending: Vec::new(), saw_audio: false, checked: [false; 2], input: Input::default() });
                        self.last_media = Instant::now();
                        let r = self.session().accept_request(request_id);
                        self.respond(r).await
                    }
                    Err(why) => {
                        let text = match why {
                            Refusal::WrongKey => "unknown stream key",
                            Refusal::AlreadyPublishing => "this stream already has a publisher",
                            _ => "the ingest cannot take this stream now; retry shortly",
                        };
                        let r = self.session().reject_request(request_id, "NetStream.Publish.BadName", text);
                        self.respond(r).await?;
                        self.refuse(why, text)
                    }
                }
            }
            ServerSessionEvent::StreamMetadataChanged { metadata, .. } => {
                if let Err(OverLimit(why)) = Input::metadata(&self.on_air.settings.limits, &metadata) {
                    return self.refuse(Refusal::InputTooLarge, &why);
                }
                self.metadata = Some(metadata);
                Ok(())
            }
            ServerSessionEvent::VideoDataReceived { data, timestamp, .. } => self.media(Tag { kind: Kind::Video, timestamp: timestamp.value, body: data }).await,
            ServerSessionEvent::AudioDataReceived { data, timestamp, .. } => self.media(Tag { kind: Kind::Audio, timestamp: timestamp.value, body: data }).await,
            ServerSessionEvent::PublishStreamFinished { .. } => {
                // Dropping `live` closes the feed: the encoder flushes, the grace period starts.
                self.live = None;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    async fn media(&mut self, tag: Tag) -> Outcome {
        let Some(live) = self.live.as_mut() else { return Ok(()) };
        self.last_media = Instant::now();
        let slot = tag.kind as usize - Kind::Audio as usize;
        if !live.checked[slot] && !tag.body.is_empty() {
            live.checked[slot] = true;
            if let Err(u) = tag.check_codec() {
                return self.refuse(Refusal::UnsupportedCodec, &u.0);
            }
        }
        let limits = &self.on_air.settings.limits;
        let checked = match tag.kind {
            Kind::Video if tag.is_sequence_header() => live.input.sequence_header(limits, &tag.body),
            Kind::Video => live.input.frame(limits, tag.timestamp),
            Kind::Audio => Ok(()),
        };
        if let Err(OverLimit(why)) = checked {
            return self.refuse(Refusal::InputTooLarge, &why);
        }
        self.on_air.metrics.ingest_bytes.inc_by(tag.body.len() as u64);
        live.publishing.broadcast.ingest.lock().unwrap_or_else(|p| p.into_inner()).add(tag.body.len(), tag.kind == Kind::Video && !tag.is_sequence_header());
        if live.feed.is_none() {
            if tag.kind == Kind::Audio {
                live.saw_audio = true;
            }
            if tag.is_sequence_header() {
                live.pending.retain(|t| t.kind != tag.kind);
                live.pending.push(tag);
                return Ok(());
            }
            if !tag.is_key_frame() {
                return Ok(());
            }
            // The SPS is what the decoder gets; metadata only when there was none.
            let height = live.input.size.map(|(_, h)| h).or_else(|| self.metadata.as_ref().and_then(|m| m.video_height));
            let audio = self.metadata.as_ref().and_then(|m| m.audio_codec_id).is_some() || live.saw_audio;
            let settings = self.on_air.settings.clone();
            let b = live.publishing.broadcast.clone();
            let (outputs, renditions) = b.outputs(&settings, height, audio);
            let has_audio = outputs.iter().any(|o| matches!(o, crate::ladder::Output::Audio { .. }));
            let (tx, rx) = mpsc::channel(FEED_TAGS);
            let encoder = Encoder { settings: Arc::clone(&settings), outputs, renditions, audio: has_audio, metrics: self.on_air.metrics.clone(), broadcast: b.id, slot: b.encoding.clone() };
            live.encoder = Some(tokio::spawn(encoder.run(rx)));
            for t in live.pending.drain(..) {
                let _ = tx.send(t).await;
            }
            live.feed = Some(tx);
        }
        let feed = live.feed.as_ref().expect("started above");
        if feed.send(tag).await.is_err() {
            // The encoder gave up; `run` collects its reason.
            tracing::debug!("encoder feed closed");
        }
        Ok(())
    }

    fn refuse(&mut self, why: Refusal, detail: &str) -> Outcome {
        self.on_air.refuse(why);
        tracing::warn!(peer = %self.peer, reason = why.label(), detail, "publisher refused");
        Err(format!("refused ({}): {detail}", why.label()))
    }
}

/// Binds the RTMP listener (before serving, so a taken port fails start-up).
pub async fn bind(addr: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("cannot listen on RTMP_ADDR={addr}: {e}"))
}
