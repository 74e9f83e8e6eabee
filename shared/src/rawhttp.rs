//! Test support (feature `testing`): a raw HTTP/1.1 client for tests that
//! must control when each body byte is sent — slow, stalled or hostile
//! uploads — which reqwest cannot do.
//!
//! The response is read concurrently with the sending: a server may answer
//! before the body ends (a refusal, a cut-off), and a later write that the
//! server's closed socket resets must not lose that answer.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// How long a test waits for any answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(60);

pub struct RawRequest {
    write: OwnedWriteHalf,
    response: JoinHandle<String>,
}

/// A parsed response: status, head (status line and headers) and body text.
pub struct Answer {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {:?}", self.body))
    }
}

impl RawRequest {
    /// Connects to 127.0.0.1:`port` and sends `head` (request line and headers, ending in a blank line).
    pub async fn open(port: u16, head: &str) -> RawRequest {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.expect("connect to the app");
        let (mut read, mut write) = stream.into_split();
        write.write_all(head.as_bytes()).await.expect("send the request head");
        let response = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            let deadline = Instant::now() + ANSWER_WITHIN;
            while !is_complete(&got) && Instant::now() < deadline {
                match tokio::time::timeout(ANSWER_WITHIN, read.read(&mut buf)).await {
                    Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
                    _ => break,
                }
            }
            String::from_utf8_lossy(&got).into_owned()
        });
        RawRequest { write, response }
    }

    /// Sends body bytes; false once the server has closed its side.
    pub async fn send(&mut self, bytes: &[u8]) -> bool {
        self.write.write_all(bytes).await.is_ok()
    }

    /// The response, however the body sending went.
    pub async fn answer(self) -> Answer {
        let text = tokio::time::timeout(ANSWER_WITHIN, self.response).await.expect("an answer within 60 s").expect("reader task");
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no response head in {text:?}"));
        let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status in {head:?}"));
        Answer { status, head: head.to_owned(), body: body.to_owned() }
    }
}

/// A whole response: the head, and as many body bytes as it announces.
fn is_complete(got: &[u8]) -> bool {
    let text = String::from_utf8_lossy(got);
    let Some((head, body)) = text.split_once("\r\n\r\n") else { return false };
    let announced = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("content-length").then(|| v.trim().parse::<usize>().unwrap_or(0))
    });
    body.len() >= announced.unwrap_or(0)
}

/// The sum of a metric's series whose labels contain `label` (e.g.
/// `resource="uploads"`), from a Prometheus text page.
pub fn labelled_metric(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{') && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_is_complete_once_its_announced_body_is_in() {
        assert!(!is_complete(b"HTTP/1.1 204 No Content\r\n"));
        assert!(is_complete(b"HTTP/1.1 204 No Content\r\nupload-offset: 5\r\n\r\n"));
        assert!(!is_complete(b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 4\r\n\r\n{}"));
        assert!(is_complete(b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 2\r\n\r\n{}"));
    }

    #[test]
    fn labelled_series_are_picked_by_label() {
        let page = "g{resource=\"uploads\",service=\"s\"} 2\ng{resource=\"bytes\",service=\"s\"} 80\ng_total{resource=\"uploads\"} 9\n";
        assert_eq!(labelled_metric(page, "g", "resource=\"uploads\""), 2.0);
        assert_eq!(labelled_metric(page, "g", "service=\"s\""), 82.0);
    }
}
