//! Attach clients of the monitor: connections that asked to follow the
//! container's output and (optionally) feed its stdin. Everything is
//! non-blocking and bounded: output queued for a client that does not read
//! beyond [`MAX_PENDING`] drops that client (the log still has it all);
//! stdin waiting for a container that does not read beyond
//! [`MAX_STDIN_PENDING`] stops reading from clients until it drains.

use std::io::{self, Read as _, Write as _};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;

use nix::errno::Errno;
use prost::Message as _;

use super::MAX_FRAME;
use super::log::Stream;
use super::proto::AttachFrame;

/// Output queued for one client before it is dropped as too slow.
pub const MAX_PENDING: usize = 4 << 20;
/// Stdin queued for the container before clients are no longer read.
pub const MAX_STDIN_PENDING: usize = 1 << 20;

/// Stream numbers on the wire.
pub const STDIN: u32 = 0;
pub const STDOUT: u32 = 1;
pub const STDERR: u32 = 2;

#[derive(Debug)]
pub struct Client {
    pub sock: UnixStream,
    pub stdin: bool,
    stdout: bool,
    stderr: bool,
    /// Encoded frames not yet written.
    pending: Vec<u8>,
    /// Bytes of an incomplete inbound frame.
    inbuf: Vec<u8>,
    /// Set when the client must be dropped (hung up, too slow, garbage).
    pub gone: bool,
}

/// What a client sent.
#[derive(Debug, Default)]
pub struct Input {
    pub data: Vec<u8>,
    /// The client closed its stdin (or hung up, if it had stdin).
    pub closed_stdin: bool,
}

impl Client {
    pub fn new(sock: UnixStream, stdin: bool, stdout: bool, stderr: bool) -> io::Result<Self> {
        sock.set_nonblocking(true)?;
        Ok(Client {
            sock,
            stdin,
            stdout,
            stderr,
            pending: Vec::new(),
            inbuf: Vec::new(),
            gone: false,
        })
    }

    pub fn wants_write(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Queues output of `stream` if this client follows it.
    pub fn output(&mut self, stream: Stream, data: &[u8]) {
        let (wanted, n) = match stream {
            Stream::Stdout => (self.stdout, STDOUT),
            Stream::Stderr => (self.stderr, STDERR),
        };
        if wanted {
            self.queue(&AttachFrame {
                stream: n,
                data: data.to_vec(),
                close: false,
            });
        }
    }

    /// Queues the last frame: the container exited.
    pub fn closing(&mut self) {
        self.queue(&AttachFrame {
            stream: STDOUT,
            data: Vec::new(),
            close: true,
        });
    }

    fn queue(&mut self, f: &AttachFrame) {
        if self.gone {
            return;
        }
        let body = f.encode_to_vec();
        let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
        self.pending.extend_from_slice(&len.to_be_bytes());
        self.pending.extend_from_slice(&body);
        self.flush();
        if self.pending.len() > MAX_PENDING {
            eprintln!("monitor: an attached client is not reading; dropping it");
            self.gone = true;
        }
    }

    /// Writes what it can without blocking.
    pub fn flush(&mut self) {
        while !self.pending.is_empty() {
            match self.sock.write(&self.pending) {
                Ok(0) => {
                    self.gone = true;
                    return;
                }
                Ok(n) => {
                    self.pending.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.gone = true;
                    return;
                }
            }
        }
    }

    /// Reads what is there and decodes complete frames.
    pub fn read(&mut self) -> Input {
        let mut input = Input::default();
        let mut buf = [0u8; 32 * 1024];
        loop {
            match self.sock.read(&mut buf) {
                Ok(0) => {
                    self.gone = true;
                    input.closed_stdin = self.stdin;
                    break;
                }
                Ok(n) => self.inbuf.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.gone = true;
                    input.closed_stdin = self.stdin;
                    break;
                }
            }
            if self.inbuf.len() > MAX_FRAME + 4 {
                break;
            }
        }
        while let Some(len) = self
            .inbuf
            .get(..4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(|b| u32::from_be_bytes(b) as usize)
        {
            if len > MAX_FRAME {
                self.gone = true;
                break;
            }
            if self.inbuf.len() < 4 + len {
                break;
            }
            let frame = AttachFrame::decode(&self.inbuf[4..4 + len]);
            self.inbuf.drain(..4 + len);
            match frame {
                Ok(f) if self.stdin && f.stream == STDIN => {
                    input.data.extend_from_slice(&f.data);
                    if f.close {
                        input.closed_stdin = true;
                        self.stdin = false;
                    }
                }
                Ok(_) => {}
                Err(_) => {
                    self.gone = true;
                    break;
                }
            }
        }
        input
    }
}

/// Writes as much of `pending` to `fd` (non-blocking) as it takes.
/// Err when the reader is gone.
pub fn flush_stdin(fd: &OwnedFd, pending: &mut Vec<u8>) -> Result<(), Errno> {
    while !pending.is_empty() {
        match nix::unistd::write(fd.as_fd(), pending) {
            Ok(n) => {
                pending.drain(..n);
            }
            Err(Errno::EAGAIN) => return Ok(()),
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
