//! The daemon's side of `monitor.sock` (async; one request per connection).

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UnixStream;

use super::proto::{self, request::Kind};
use super::{MAX_FRAME, PROTOCOL_VERSION};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nobody listens: the monitor has exited (the container with it).
    #[error("the container's monitor is not running")]
    Gone,
    #[error("talking to the container's monitor: {0}")]
    Io(#[from] std::io::Error),
    #[error("the container's monitor did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the container's monitor refused: {0}")]
    Refused(String),
}

/// Sends `kind` to the monitor listening on `socket` and returns its
/// answer; `timeout` None waits as long as it takes (Wait).
pub async fn call(
    socket: &Path,
    kind: Kind,
    timeout: Option<Duration>,
) -> Result<proto::Response, ClientError> {
    call_keep(socket, kind, timeout).await.map(|(r, _)| r)
}

/// Attaches to the container's stdio: the connection, after the monitor's
/// answer, carries length-prefixed `AttachFrame`s both ways.
pub async fn attach(socket: &Path, a: proto::Attach) -> Result<UnixStream, ClientError> {
    call_keep(socket, Kind::Attach(a), Some(Duration::from_secs(10)))
        .await
        .map(|(_, s)| s)
}

/// [`call`], keeping the connection.
async fn call_keep(
    socket: &Path,
    kind: Kind,
    timeout: Option<Duration>,
) -> Result<(proto::Response, UnixStream), ClientError> {
    let work = async {
        // The monitor may go away mid-call (its container exited and it
        // finished): the caller reads exit.json. A connection queued on
        // the monitor's listener when it closes is reset (the error shows
        // at connect or at the first read or write).
        let gone = |e: std::io::Error| match e.kind() {
            std::io::ErrorKind::NotFound
            | std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::UnexpectedEof
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::BrokenPipe => ClientError::Gone,
            _ => ClientError::Io(e),
        };
        let mut stream = UnixStream::connect(socket).await.map_err(gone)?;
        let req = proto::Request {
            version: PROTOCOL_VERSION,
            kind: Some(kind),
        };
        write_frame(&mut stream, &req).await.map_err(gone)?;
        let resp: proto::Response = read_frame(&mut stream).await.map_err(gone)?;
        if !resp.error.is_empty() {
            return Err(ClientError::Refused(resp.error));
        }
        Ok((resp, stream))
    };
    match timeout {
        None => work.await,
        Some(t) => tokio::time::timeout(t, work)
            .await
            .map_err(|_| ClientError::Timeout(t))?,
    }
}

/// Writes one length-prefixed message (the async twin of
/// [`super::write_frame`]).
pub async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    msg: &impl prost::Message,
) -> std::io::Result<()> {
    let body = msg.encode_to_vec();
    let len = u32::try_from(body.len()).map_err(std::io::Error::other)?;
    let mut buf = Vec::with_capacity(4 + body.len());
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(&body);
    w.write_all(&buf).await
}

/// Reads one length-prefixed message of at most [`MAX_FRAME`] bytes.
pub async fn read_frame<M: prost::Message + Default, R: AsyncRead + Unpin>(
    r: &mut R,
) -> std::io::Result<M> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::other(format!("message of {len} bytes")));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    M::decode(body.as_slice()).map_err(std::io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait() -> Kind {
        Kind::Wait(proto::Wait {})
    }

    /// A monitor that exits with the daemon's request still queued (its
    /// container was just killed) is gone, not an I/O failure: the caller
    /// then reads the exit file.
    #[tokio::test]
    async fn a_monitor_that_exits_without_answering_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.sock");
        // Never accepted: the connection waits in the listener's queue.
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let closer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            drop(listener);
        });
        let r = call(&path, wait(), Some(Duration::from_secs(5))).await;
        closer.await.unwrap();
        assert!(matches!(r, Err(ClientError::Gone)), "{r:?}");
        // And once the socket file is gone too.
        std::fs::remove_file(&path).unwrap();
        let r = call(&path, wait(), Some(Duration::from_secs(5))).await;
        assert!(matches!(r, Err(ClientError::Gone)), "{r:?}");
    }
}
