//! HTTP/1.1 by hand, for the servers the tests run: the accept loop they share, reading a
//! request, its headers and its form or query encoding; a server that answers
//! everything the same way; and a CONNECT proxy that tunnels any host name to one
//! loopback port.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

/// A listener on a free loopback port whose connections go to `serve` on a thread of its
/// own, until this is dropped. Every test runs in the one process, so what a server
/// keeps (the calls and bytes it saw, the tokens it issued) must go with the test that
/// started it: the drop ends the accept loop, and with it `serve` and all it holds.
pub struct Server {
    pub port: u16,
    stop: Arc<AtomicBool>,
}

impl Server {
    pub fn start(what: &str, mut serve: impl FnMut(TcpStream) + Send + 'static) -> Self {
        let listener =
            TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind {what}: {e}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("{what}'s address: {e}"))
            .port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                if let Ok(stream) = stream {
                    serve(stream);
                }
            }
        });
        Self { port, stop }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // accept() returns only with a connection: this one wakes it to see the stop.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// `text` with everything but RFC 3986's unreserved characters as `%XX`.
pub fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `%XX` and `+` of a query or form decoded.
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hexits = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("00");
                out.push(u8::from_str_radix(hexits, 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads one HTTP/1.1 request: its head (request line and headers) and body.
pub fn read_message(
    reader: &mut BufReader<TcpStream>,
) -> std::io::Result<Option<(String, Vec<u8>)>> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        if line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let length: usize = header(&head, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok(Some((head, body)))
}

/// A header's value in a request's head, by name in any case.
pub fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// A server that answers every request with the same status and body: a broken or
/// impostor endpoint.
pub fn serve_canned(status: &'static str, content_type: &'static str, body: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the canned server");
    let port = listener.local_addr().expect("address").port();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(match stream.try_clone() {
                Ok(s) => s,
                Err(_) => continue,
            });
            let mut stream = stream;
            while let Ok(Some(_)) = read_message(&mut reader) {
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
            }
        }
    });
    port
}

/// An HTTP proxy on a free loopback port that answers CONNECT for any host by opening a
/// tunnel to one loopback port, and records the hosts asked for: how a test reaches a
/// registry under a public name without resolving it.
pub struct ConnectProxy {
    pub port: u16,
    hosts: Arc<Mutex<Vec<String>>>,
    _server: Server,
}

impl ConnectProxy {
    pub fn start(target: u16) -> Self {
        let hosts = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&hosts);
        let server = Server::start("the CONNECT proxy", move |client| {
            let seen = Arc::clone(&seen);
            thread::spawn(move || tunnel(client, target, &seen));
        });
        Self {
            port: server.port,
            hosts,
            _server: server,
        }
    }

    /// The `HOST:PORT`s clients asked to CONNECT to.
    pub fn hosts(&self) -> Vec<String> {
        self.hosts.lock().unwrap().clone()
    }
}

/// One CONNECT: the host asked for recorded, then bytes both ways between the client
/// and `target` until either side closes.
fn tunnel(client: TcpStream, target: u16, hosts: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut header = String::new();
    while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
        header.clear();
    }
    let mut client = client;
    let mut words = line.split_whitespace();
    if words.next() != Some("CONNECT") {
        let _ = client.write_all(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n");
        return;
    }
    hosts
        .lock()
        .unwrap()
        .push(words.next().unwrap_or_default().to_owned());
    let Ok(upstream) = TcpStream::connect(("127.0.0.1", target)) else {
        let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n");
        return;
    };
    let _ = client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
    let (mut up_read, mut up_write) = (upstream.try_clone().unwrap(), upstream);
    let mut client_write = client.try_clone().unwrap();
    let mut client_read = client;
    let forward = thread::spawn(move || {
        let _ = std::io::copy(&mut client_read, &mut up_write);
        let _ = up_write.shutdown(Shutdown::Write);
    });
    let _ = std::io::copy(&mut up_read, &mut client_write);
    let _ = client_write.shutdown(Shutdown::Write);
    let _ = forward.join();
}
