//! Zero-copy sending of static files on plain TCP connections, as nginx's `sendfile on`.
//!
//! hyper writes a response body by handing the body's `Bytes` to the connection stream's
//! `poll_write_vectored`, untouched. Static files kept in memory are made with
//! [`file_backed`]: their bytes are registered, by address range, with the open file they
//! were read from. A connection stream wrapped in [`SendfileStream`] recognises a slice
//! (of [`SENDFILE_MIN_SLICE`] or more) that lies inside such a range and sends those bytes
//! from the file with `sendfile(2)`,
//! so the kernel hands page-cache pages to the socket instead of copying the bytes from
//! user space. The head before them goes out with `MSG_MORE`, in the same segment as the
//! file's first bytes.
//!
//! Nothing changes for hyper, the layers, or a client: a layer that transforms the body
//! (compression) makes new bytes that are not registered, TLS encrypts into its own
//! buffers, and both are written as usual. A file that shrank since it was read (sendfile
//! returns 0) or a file system that cannot sendfile falls back to writing the in-memory
//! copy, so a response is always as long as its Content-Length says.
//!
//! A registration lives exactly as long as the memory it describes: it is removed in the
//! owner's `Drop`, before the memory is freed, so an address can never be mistaken for a
//! file after it has been reused.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use rustix::net::SendFlags;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

/// Files smaller than this are copied: one copy of a few KiB costs less than the extra
/// system call that sending the head and the file separately takes.
pub(crate) const SENDFILE_MIN_LEN: usize = 16 * 1024;
/// Shortest slice sent with sendfile: a shorter one (a head, a small PHP output chunk, the
/// tail of a partly sent file) is written from memory without looking at the registry,
/// so ordinary writes never touch its lock.
pub(crate) const SENDFILE_MIN_SLICE: usize = 4 * 1024;
/// Most files registered at once; each keeps its file descriptor open while registered.
pub(crate) const MAX_REGISTERED_FILES: usize = 256;

/// Address ranges of file-backed bytes: start address → the file and the length.
static REGISTRY: RwLock<BTreeMap<usize, Registered>> = RwLock::new(BTreeMap::new());
/// How many ranges are registered (read without the lock on every write).
static REGISTERED: AtomicUsize = AtomicUsize::new(0);

#[derive(Debug)]
struct Registered {
    len: usize,
    file: Arc<File>,
}

/// `contents`, read from `file` at offset 0, as `Bytes` that a [`SendfileStream`] sends
/// from the file. Small contents, or more than [`MAX_REGISTERED_FILES`] files at once,
/// give plain `Bytes` (and close `file`).
pub(crate) fn file_backed(contents: Vec<u8>, file: File) -> Bytes {
    if contents.len() < SENDFILE_MIN_LEN {
        return Bytes::from(contents);
    }
    let start = contents.as_ptr() as usize;
    {
        let mut registry = REGISTRY.write().unwrap_or_else(PoisonError::into_inner);
        if registry.len() >= MAX_REGISTERED_FILES {
            return Bytes::from(contents);
        }
        registry.insert(
            start,
            Registered {
                len: contents.len(),
                file: Arc::new(file),
            },
        );
        REGISTERED.store(registry.len(), Ordering::Release);
    }
    // The Vec's heap buffer does not move when the Vec does: `start` stays its address.
    Bytes::from_owner(FileBacked { contents, start })
}

/// Owns registered bytes; dropping it unregisters them before they are freed.
struct FileBacked {
    contents: Vec<u8>,
    start: usize,
}

impl AsRef<[u8]> for FileBacked {
    fn as_ref(&self) -> &[u8] {
        &self.contents
    }
}

impl Drop for FileBacked {
    fn drop(&mut self) {
        let mut registry = REGISTRY.write().unwrap_or_else(PoisonError::into_inner);
        registry.remove(&self.start);
        REGISTERED.store(registry.len(), Ordering::Release);
    }
}

/// Where `bufs` first holds file-backed bytes: the slice's index, its file and the offset
/// in the file of the slice's first byte.
fn first_file_backed(bufs: &[IoSlice<'_>]) -> Option<(usize, Arc<File>, u64)> {
    let worth_sending = |buf: &IoSlice<'_>| buf.len() >= SENDFILE_MIN_SLICE;
    if REGISTERED.load(Ordering::Acquire) == 0 || !bufs.iter().any(worth_sending) {
        return None;
    }
    let registry = REGISTRY.read().unwrap_or_else(PoisonError::into_inner);
    bufs.iter().enumerate().find_map(|(index, buf)| {
        if !worth_sending(buf) {
            return None;
        }
        let address = buf.as_ptr() as usize;
        let (start, registered) = registry.range(..=address).next_back()?;
        let offset = address - start;
        (offset + buf.len() <= registered.len)
            .then(|| (index, Arc::clone(&registered.file), offset as u64))
    })
}

/// A plain TCP connection stream that sends [`file_backed`] bytes with `sendfile(2)`.
#[derive(Debug)]
pub(crate) struct SendfileStream {
    stream: TcpStream,
}

impl SendfileStream {
    /// Wraps an accepted connection.
    pub(crate) fn new(stream: TcpStream) -> Self {
        Self { stream }
    }

    /// Sends `memory` (file-backed, at `offset` in `file`) from the file.
    fn poll_sendfile(
        &self,
        cx: &mut Context<'_>,
        file: &File,
        offset: u64,
        memory: &[u8],
    ) -> Poll<io::Result<usize>> {
        let sent = ready!(self.poll_write_with(cx, || {
            let mut at = offset;
            rustix::fs::sendfile(&self.stream, file, Some(&mut at), memory.len())
        }));
        match sent {
            Ok(n) if n > 0 => Poll::Ready(Ok(n)),
            // The file shrank, or cannot be sent from: the memory holds the same bytes.
            // A broken connection fails this write with its own error.
            Ok(_) | Err(_) => self.poll_send(cx, &[IoSlice::new(memory)], SendFlags::empty()),
        }
    }

    /// Sends `bufs`; with `MSG_MORE` (a response head) they leave with the file's bytes.
    fn poll_send(
        &self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
        flags: SendFlags,
    ) -> Poll<io::Result<usize>> {
        self.poll_write_with(cx, || {
            let mut no_control = rustix::net::SendAncillaryBuffer::default();
            rustix::net::sendmsg(
                &self.stream,
                bufs,
                &mut no_control,
                flags | SendFlags::NOSIGNAL,
            )
        })
    }

    /// Runs the system call `write` once the socket is writable, until it does not block.
    fn poll_write_with(
        &self,
        cx: &mut Context<'_>,
        mut write: impl FnMut() -> rustix::io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.stream.poll_write_ready(cx))?;
            match self
                .stream
                .try_io(Interest::WRITABLE, || write().map_err(io::Error::from))
            {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
                result => return Poll::Ready(result),
            }
        }
    }
}

impl AsyncRead for SendfileStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for SendfileStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match first_file_backed(bufs) {
            None => Pin::new(&mut self.stream).poll_write_vectored(cx, bufs),
            // Only empty slices before the file's bytes: send those.
            Some((index, file, offset)) if bufs[..index].iter().all(|b| b.is_empty()) => {
                self.poll_sendfile(cx, &file, offset, &bufs[index])
            }
            Some((index, _, _)) => self.poll_send(cx, &bufs[..index], SendFlags::MORE),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn file_with(contents: &[u8]) -> (tempfile::NamedTempFile, File) {
        let mut named = tempfile::NamedTempFile::new().unwrap();
        named.write_all(contents).unwrap();
        let file = File::open(named.path()).unwrap();
        (named, file)
    }

    #[test]
    fn slices_inside_registered_bytes_are_found_with_their_offset() {
        let contents: Vec<u8> = (0..SENDFILE_MIN_LEN * 2).map(|i| i as u8).collect();
        let (_named, file) = file_with(&contents);
        let bytes = file_backed(contents, file);
        let tail = bytes.slice(100..);
        let head = b"HTTP/1.1 200 OK\r\n\r\n";
        let bufs = [IoSlice::new(head), IoSlice::new(&tail)];
        let (index, _, offset) = first_file_backed(&bufs).unwrap();
        assert_eq!((index, offset), (1, 100));
        // Memory elsewhere, or running past the end of the range, is not file-backed.
        let other = vec![0u8; SENDFILE_MIN_LEN * 2];
        assert!(first_file_backed(&[IoSlice::new(&other)]).is_none());
        // A short tail of file-backed bytes is written from memory.
        let short_tail = bytes.slice(bytes.len() - 100..);
        assert!(first_file_backed(&[IoSlice::new(&short_tail)]).is_none());
    }

    #[test]
    fn dropping_the_last_clone_unregisters() {
        let contents = vec![7u8; SENDFILE_MIN_LEN];
        let (_named, file) = file_with(&contents);
        let bytes = file_backed(contents, file);
        let clone = bytes.clone();
        let address = bytes.as_ptr() as usize;
        let registered = || REGISTRY.read().unwrap().contains_key(&address);
        drop(bytes);
        assert!(registered());
        drop(clone);
        assert!(!registered());
    }

    #[test]
    fn small_contents_are_plain_bytes() {
        let (_named, file) = file_with(b"tiny");
        let bytes = file_backed(b"tiny".to_vec(), file);
        assert!(first_file_backed(&[IoSlice::new(&bytes)]).is_none());
    }

    /// Writes `head` and `body` through a SendfileStream and returns what the peer read.
    async fn send_through(head: &[u8], body: Bytes) -> Vec<u8> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut peer = TcpStream::connect(address).await.unwrap();
            let mut received = Vec::new();
            peer.read_to_end(&mut received).await.unwrap();
            received
        });
        let (stream, _) = listener.accept().await.unwrap();
        let mut stream = SendfileStream::new(stream);
        let mut bufs = vec![Bytes::copy_from_slice(head), body];
        while bufs.iter().any(|b| !b.is_empty()) {
            let slices: Vec<IoSlice<'_>> = bufs.iter().map(|b| IoSlice::new(b)).collect();
            let mut n = stream.write_vectored(&slices).await.unwrap();
            for buf in &mut bufs {
                let take = n.min(buf.len());
                bytes::Buf::advance(buf, take);
                n -= take;
            }
        }
        stream.shutdown().await.unwrap();
        drop(stream);
        client.await.unwrap()
    }

    #[tokio::test]
    async fn file_backed_bytes_arrive_whole_after_the_head() {
        let contents: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let (_named, file) = file_with(&contents);
        let body = file_backed(contents.clone(), file);
        let received = send_through(b"HEAD\r\n", body).await;
        assert_eq!(&received[..6], b"HEAD\r\n");
        assert_eq!(&received[6..], &contents[..]);
    }

    #[tokio::test]
    async fn a_file_that_shrank_is_completed_from_memory() {
        let contents = vec![b'x'; SENDFILE_MIN_LEN * 4];
        let (named, file) = file_with(&contents);
        let body = file_backed(contents.clone(), file);
        named.as_file().set_len(10).unwrap();
        let received = send_through(b"", body).await;
        assert_eq!(received.len(), contents.len());
        assert!(received.iter().all(|&b| b == b'x'));
    }
}
