//! A fault-injecting TCP proxy (in the spirit of toxiproxy) for the end-to-end tests: put it between
//! a caller and a callee by pointing the caller's configured URL at it, then switch its [`Fault`] while
//! traffic runs. Faults apply per chunk the caller sends, so pooled keep-alive connections feel them
//! too, not only new ones.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// What the proxy does to the bytes a caller sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Passes everything through.
    None,
    /// Holds each chunk this long before passing it on: the callee still gets the request, late
    /// (the caller may have given up by then — the case idempotency and recovery exist for).
    Slow(Duration),
    /// Answers `503` problem+json itself and closes the connection; the callee sees nothing.
    Failing,
}

/// A running proxy to `127.0.0.1:<upstream>`.
#[derive(Clone)]
pub struct FaultProxy {
    /// The port callers connect to.
    pub port: u16,
    upstream: Arc<AtomicU16>,
    fault: Arc<Mutex<Fault>>,
}

fn failing() -> String {
    let body = r#"{"type":"about:blank","title":"Injected fault","status":503}"#;
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

impl FaultProxy {
    /// Listens on a free loopback port; set the upstream with [`FaultProxy::to`] before traffic.
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let proxy = Self {
            port: listener.local_addr().unwrap().port(),
            upstream: Arc::new(AtomicU16::new(0)),
            fault: Arc::new(Mutex::new(Fault::None)),
        };
        let shared = proxy.clone();
        thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let proxy = shared.clone();
                thread::spawn(move || proxy.serve(client));
            }
        });
        proxy
    }

    /// Sends traffic to `127.0.0.1:<port>`.
    pub fn to(&self, port: u16) {
        self.upstream.store(port, Ordering::SeqCst);
    }

    /// Switches the fault (for new chunks on every connection).
    pub fn set(&self, fault: Fault) {
        *self.fault.lock().unwrap() = fault;
    }

    fn fault(&self) -> Fault {
        *self.fault.lock().unwrap()
    }

    fn serve(&self, mut client: TcpStream) {
        let mut upstream: Option<TcpStream> = None;
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = match client.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            match self.fault() {
                Fault::Failing => {
                    let _ = client.write_all(failing().as_bytes());
                    break;
                }
                Fault::Slow(delay) => thread::sleep(delay),
                Fault::None => {}
            }
            if upstream.is_none() {
                let Ok(stream) = TcpStream::connect(("127.0.0.1", self.upstream.load(Ordering::SeqCst)))
                else {
                    break;
                };
                let (mut from, mut to) = (stream.try_clone().unwrap(), client.try_clone().unwrap());
                thread::spawn(move || {
                    let _ = std::io::copy(&mut from, &mut to);
                    let _ = to.shutdown(Shutdown::Both);
                });
                upstream = Some(stream);
            }
            if upstream.as_mut().is_some_and(|up| up.write_all(&buf[..n]).is_err()) {
                break;
            }
        }
        if let Some(up) = upstream {
            let _ = up.shutdown(Shutdown::Both);
        }
        let _ = client.shutdown(Shutdown::Both);
    }
}
