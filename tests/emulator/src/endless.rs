//! The `endless` fault: a response whose body never ends, written until the
//! client hangs up, and the record of how many bytes each one got onto the
//! wire, so that a test can tell a client that stopped reading at its cap
//! from one that read on.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::http;
use crate::watched::Watched;

/// How long a write may wait for the client to read before the emulator
/// gives up on the stream.
const STALL_LIMIT: Duration = Duration::from_secs(30);
/// Body bytes per write (and per chunk).
const PIECE: usize = 16 * 1024;
/// The send buffer asked of the kernel, so that little more than what the
/// client read can sit in buffers and count as written.
const SEND_BUFFER: usize = 16 * 1024;
/// The declared `Content-Length` of [`Framing::Length`]: 1 TiB.
pub const DECLARED_LENGTH: u64 = 1 << 40;
/// The body starts like a token answer, then pads one string forever.
const PREFIX: &[u8] = br#"{"access_token":"x","token_type":"Bearer","expires_in":900,"pad":""#;

/// How an endless body is framed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Framing {
    /// `Transfer-Encoding: chunked`, chunk after chunk.
    #[default]
    Chunked,
    /// No length: the body ends only when the connection closes.
    Close,
    /// A declared `Content-Length` of 1 TiB ([`DECLARED_LENGTH`]).
    Length,
}

/// Why an endless response stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamEnd {
    /// A write failed: the client closed the connection.
    ClientClosed,
    /// The fault's `max_bytes` were written; the emulator closed.
    MaxBytes,
    /// The client read nothing for 30 s; the emulator closed.
    Stalled,
}

/// One endless response, as `GET /admin/streams` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndlessStream {
    /// Its HTTP status.
    pub status: u16,
    /// Its framing.
    pub framing: Framing,
    /// Body bytes the kernel accepted (chunk framing included). Up to a few
    /// hundred KiB of them may still have sat unread in socket buffers when
    /// the client closed.
    pub bytes_written: u64,
    /// Why it stopped; `None` while it is still being written.
    pub end: Option<StreamEnd>,
}

/// What an `endless` fault asks for.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Endless {
    pub status: u16,
    pub framing: Framing,
    pub max_bytes: u64,
}

/// Every endless response since start or the last reset.
#[derive(Default)]
struct StreamLog {
    /// Bumped by each reset, so a stream begun before one stops recording.
    generation: u64,
    list: Vec<EndlessStream>,
}

/// The record of endless responses.
#[derive(Default)]
pub(crate) struct Streams(Watched<StreamLog>);

/// Which stream a writer records into.
#[derive(Clone, Copy)]
struct StreamId {
    generation: u64,
    index: usize,
}

impl Streams {
    /// The streams, first first.
    pub fn list(&self) -> Vec<EndlessStream> {
        self.0.read(|log| log.list.clone())
    }

    /// Forgets every stream.
    pub fn reset(&self) {
        self.0.update(|log| {
            log.generation += 1;
            log.list.clear();
        });
    }

    /// Blocks until at least `count` streams have ended and none is still
    /// being written: `Ok(streams)`, or `Err(streams)` past `limit`.
    pub fn wait_ended_blocking(
        &self,
        count: usize,
        limit: Duration,
    ) -> Result<Vec<EndlessStream>, Vec<EndlessStream>> {
        self.0.wait_blocking(limit, |log| ended(log, count))
    }

    /// Like [`Streams::wait_ended_blocking`], without blocking the thread.
    pub async fn wait_ended(
        &self,
        count: usize,
        limit: Duration,
    ) -> Result<Vec<EndlessStream>, Vec<EndlessStream>> {
        self.0.wait_for(limit, |log| ended(log, count)).await
    }

    fn start(&self, spec: Endless) -> StreamId {
        self.0.update(|log| {
            log.list.push(EndlessStream {
                status: spec.status,
                framing: spec.framing,
                bytes_written: 0,
                end: None,
            });
            StreamId {
                generation: log.generation,
                index: log.list.len() - 1,
            }
        })
    }

    fn with(&self, id: StreamId, notify: bool, f: impl FnOnce(&mut EndlessStream)) {
        let change = |log: &mut StreamLog| {
            if log.generation == id.generation {
                if let Some(stream) = log.list.get_mut(id.index) {
                    f(stream);
                }
            }
        };
        if notify {
            self.0.update(change);
        } else {
            self.0.update_quietly(change);
        }
    }
}

fn ended(log: &StreamLog, count: usize) -> Result<Vec<EndlessStream>, Vec<EndlessStream>> {
    let done = log.list.iter().filter(|s| s.end.is_some()).count();
    if done >= count && done == log.list.len() {
        Ok(log.list.clone())
    } else {
        Err(log.list.clone())
    }
}

/// Writes the endless response until the client closes, the stream stalls
/// or `max_bytes` are written (the caller then closes); records it in
/// `streams`. Never spins: each
/// write waits for the socket to take more.
pub(crate) async fn write(
    stream: &mut TcpStream,
    streams: &Streams,
    spec: Endless,
) -> (u64, StreamEnd) {
    let _ = socket2::SockRef::from(&*stream).set_send_buffer_size(SEND_BUFFER);
    let id = streams.start(spec);
    let framing = match spec.framing {
        Framing::Chunked => Some("Transfer-Encoding: chunked".to_owned()),
        Framing::Close => None,
        Framing::Length => Some(format!("Content-Length: {DECLARED_LENGTH}")),
    };
    let headers = [
        ("Content-Type", "application/json".to_owned()),
        ("Cache-Control", "no-store".to_owned()),
    ];
    let head = http::head(spec.status, &headers, framing.as_deref());
    let (written, end) = match write_all(stream, head.as_bytes()).await {
        Ok(()) => write_body(stream, streams, id, spec).await,
        Err(end) => (0, end),
    };
    streams.with(id, true, |s| s.end = Some(end));
    (written, end)
}

async fn write_body(
    stream: &mut TcpStream,
    streams: &Streams,
    id: StreamId,
    spec: Endless,
) -> (u64, StreamEnd) {
    let first = frame(spec.framing, PREFIX);
    let filler = frame(spec.framing, &[b'a'; PIECE]);
    let mut piece: &[u8] = &first;
    let mut written = 0u64;
    loop {
        let room = spec.max_bytes.saturating_sub(written);
        if room == 0 {
            return (written, StreamEnd::MaxBytes);
        }
        let take = usize::try_from(room).map_or(piece.len(), |r| r.min(piece.len()));
        let n = match tokio::time::timeout(STALL_LIMIT, stream.write(&piece[..take])).await {
            Ok(Ok(n)) if n > 0 => n,
            Ok(_) => return (written, StreamEnd::ClientClosed),
            Err(_) => return (written, StreamEnd::Stalled),
        };
        written += n as u64;
        streams.with(id, false, |s| s.bytes_written = written);
        piece = &piece[n..];
        if piece.is_empty() {
            piece = &filler;
        }
    }
}

/// Writes the head; a failure means the client is gone.
async fn write_all(stream: &mut TcpStream, bytes: &[u8]) -> Result<(), StreamEnd> {
    match tokio::time::timeout(STALL_LIMIT, stream.write_all(bytes)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(StreamEnd::ClientClosed),
        Err(_) => Err(StreamEnd::Stalled),
    }
}

/// One piece of body on the wire: a chunk when chunked, else the bytes.
fn frame(framing: Framing, data: &[u8]) -> Vec<u8> {
    match framing {
        Framing::Chunked => {
            let mut chunk = format!("{:x}\r\n", data.len()).into_bytes();
            chunk.extend_from_slice(data);
            chunk.extend_from_slice(b"\r\n");
            chunk
        }
        Framing::Close | Framing::Length => data.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_framed_in_hex() {
        assert_eq!(frame(Framing::Chunked, b"abc"), b"3\r\nabc\r\n");
        assert_eq!(&frame(Framing::Chunked, &[b'a'; PIECE])[..6], b"4000\r\n");
        assert_eq!(frame(Framing::Close, b"abc"), b"abc");
    }

    #[test]
    fn the_prefix_is_the_start_of_a_token_answer() {
        let text = std::str::from_utf8(PREFIX).unwrap();
        let closed = format!("{text}\"}}");
        let value: serde_json::Value = serde_json::from_str(&closed).unwrap();
        assert_eq!(value["token_type"], "Bearer");
    }
}
