//! The HTTP requests a capture holds, each with what its server answered:
//! TCP streams reassembled in both directions, HTTP/1 heads read. A replayed
//! TCP stream cannot reach the storefront's own server: its sequence numbers
//! are the captured server's, so the storefront resets it. `replay` writes
//! these requests as access-log lines (`access_log`) to a log the agent
//! follows, at their recorded times, so that the application layer sees what
//! the capture's clients asked.

use std::{collections::HashMap, net::IpAddr, time::Duration};

use super::aim::{TCP, locate};
use crate::packet::TCP_SYN;

/// Longest request or response head read, as nginx's large header buffers.
const MAX_HEAD: usize = 32 * 1024;

/// One request and what the server answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// When its first byte was captured.
    pub time: Duration,
    pub client: IpAddr,
    /// `GET /path HTTP/1.1`.
    pub line: String,
    /// The answer's status; 499 (nginx's "client closed the request") when
    /// the capture holds no answer.
    pub status: u16,
    pub bytes: u64,
    pub referer: Option<String>,
    pub agent: Option<String>,
}

type End = (IpAddr, u16);

/// A stream's contiguous data, and when each segment of it began (offset,
/// capture time).
type Assembled = (Vec<u8>, Vec<(usize, Duration)>);

/// One direction of a TCP connection, its data in sequence order.
#[derive(Default)]
struct Stream {
    /// Sequence number of the first data byte (the SYN's plus one).
    base: Option<u32>,
    segments: Vec<(u32, Duration, Vec<u8>)>,
}

impl Stream {
    /// The contiguous data from the start, and when each segment of it
    /// began (offset, time). A gap ends it: what follows cannot be read.
    fn assemble(mut self) -> Assembled {
        let Some(base) = self.base.or_else(|| self.segments.first().map(|s| s.0)) else {
            return (Vec::new(), Vec::new());
        };
        let offset = |seq: u32| seq.wrapping_sub(base) as usize;
        self.segments
            .retain(|(seq, _, _)| seq.wrapping_sub(base) < 1 << 30);
        self.segments.sort_by_key(|(seq, _, _)| offset(*seq));
        let (mut data, mut marks) = (Vec::new(), Vec::new());
        for (seq, time, bytes) in self.segments {
            let at = offset(seq);
            if at > data.len() {
                break;
            }
            let fresh = &bytes[(data.len() - at).min(bytes.len())..];
            if !fresh.is_empty() {
                marks.push((data.len(), time));
                data.extend_from_slice(fresh);
            }
        }
        (data, marks)
    }
}

/// The TCP payload of a frame (Ethernet padding left out), with its ends.
fn segment(frame: &[u8]) -> Option<(End, End, u32, u8, &[u8])> {
    let at = locate(frame)?;
    let l4 = at.l4.filter(|_| at.proto == TCP)?;
    let ip_end = match at.src {
        IpAddr::V4(_) => at.ip + u16::from_be_bytes([frame[at.ip + 2], frame[at.ip + 3]]) as usize,
        IpAddr::V6(_) => {
            at.ip + 40 + u16::from_be_bytes([frame[at.ip + 4], frame[at.ip + 5]]) as usize
        }
    };
    let tcp = frame.get(l4..l4 + 20)?;
    let (sport, dport) = at.ports(frame)?;
    let seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
    let data = l4 + (tcp[12] >> 4) as usize * 4;
    let payload = frame.get(data..ip_end.min(frame.len())).unwrap_or_default();
    Some(((at.src, sport), (at.dst, dport), seq, tcp[13], payload))
}

/// Headers read per message, as many as a browser sends and then some.
const MAX_HEADERS: usize = 64;

/// What a request's head says.
struct Asked {
    /// Where the request starts in its stream.
    at: usize,
    method: String,
    line: String,
    referer: Option<String>,
    agent: Option<String>,
}

fn header(headers: &[httparse::Header<'_>], name: &str) -> Option<String> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| String::from_utf8_lossy(h.value).trim().to_string())
}

fn content_length(headers: &[httparse::Header<'_>]) -> Option<usize> {
    header(headers, "content-length")?.parse().ok()
}

/// The requests of a client's stream, in order, up to the first that is
/// not HTTP/1 or not whole.
fn requests_in(data: &[u8]) -> Vec<Asked> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        let window = &data[at..data.len().min(at + MAX_HEAD)];
        let Ok(httparse::Status::Complete(len)) = req.parse(window) else {
            break;
        };
        let (Some(method), Some(path), Some(version)) = (req.method, req.path, req.version) else {
            break;
        };
        out.push(Asked {
            at,
            method: method.to_string(),
            line: format!("{method} {path} HTTP/1.{version}"),
            referer: header(req.headers, "referer"),
            agent: header(req.headers, "user-agent"),
        });
        at += len + content_length(req.headers).unwrap_or(0);
    }
    out
}

/// Where a chunked body that starts at `at` ends.
fn chunked_end(data: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let httparse::Status::Complete((len, size)) =
            httparse::parse_chunk_size(data.get(at..)?).ok()?
        else {
            return None;
        };
        at += len;
        if size == 0 {
            // Trailers, up to an empty line.
            let end = memchr::memmem::find(data.get(at.checked_sub(2)?..)?, b"\r\n\r\n")?;
            return Some(at - 2 + end + 4);
        }
        at += usize::try_from(size).ok()? + 2;
    }
}

/// The statuses and body sizes of a server's answers, in order.
fn answers_in(data: &[u8], methods: &[&str]) -> Vec<(u16, u64)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut res = httparse::Response::new(&mut headers);
        let window = &data[at..data.len().min(at + MAX_HEAD)];
        let Ok(httparse::Status::Complete(len)) = res.parse(window) else {
            break;
        };
        let Some(status) = res.code else {
            break;
        };
        let body = at + len;
        if status < 200 && status != 101 {
            // An interim answer (100 Continue): the real one follows. 101
            // Switching Protocols is final: what follows is no HTTP/1.
            at = body;
            continue;
        }
        let chunked = header(res.headers, "transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        let end = if methods.get(out.len()) == Some(&"HEAD") || matches!(status, 204 | 304) {
            Some(body)
        } else if chunked {
            chunked_end(data, body)
        } else {
            content_length(res.headers).map(|n| body + n)
        };
        // Without a length, the body runs to the end of the connection.
        let end = end.unwrap_or(data.len()).min(data.len());
        out.push((status, (end - body.min(end)) as u64));
        if end >= data.len() {
            break;
        }
        at = end;
    }
    out
}

/// The HTTP/1 requests in `frames` (each an Ethernet frame's capture time
/// and bytes), in the order they were sent.
pub fn requests<'a>(frames: impl IntoIterator<Item = (Duration, &'a [u8])>) -> Vec<Request> {
    // Each direction's connections in turn: a long capture may reuse the
    // same addresses and ports, each time from a new SYN.
    let mut streams: HashMap<(End, End), Vec<Stream>> = HashMap::new();
    for (time, frame) in frames {
        let Some((src, dst, seq, flags, payload)) = segment(frame) else {
            continue;
        };
        let list = streams.entry((src, dst)).or_default();
        if flags & TCP_SYN != 0 {
            let base = Some(seq.wrapping_add(1));
            match list.last_mut() {
                // A retransmitted SYN.
                Some(last) if last.base == base => {}
                Some(last) if last.base.is_none() && last.segments.is_empty() => last.base = base,
                _ => list.push(Stream {
                    base,
                    segments: Vec::new(),
                }),
            }
        } else if !payload.is_empty() {
            if list.is_empty() {
                list.push(Stream::default());
            }
            let last = list.last_mut().expect("a stream");
            last.segments.push((seq, time, payload.to_vec()));
        }
    }
    let mut assembled: HashMap<(End, End, usize), Assembled> = streams
        .into_iter()
        .flat_map(|((src, dst), list)| {
            list.into_iter()
                .enumerate()
                .map(move |(i, s)| ((src, dst, i), s.assemble()))
        })
        .collect();
    let clients: Vec<(End, End, usize)> = assembled
        .iter()
        .filter(|(_, (data, _))| !requests_in(data).is_empty())
        .map(|(key, _)| *key)
        .collect();
    let mut out = Vec::new();
    for (client, server, nth) in clients {
        let (data, marks) = assembled.remove(&(client, server, nth)).unwrap_or_default();
        let answers = assembled.get(&(server, client, nth)).map(|a| &a.0);
        let found = requests_in(&data);
        let methods: Vec<&str> = found.iter().map(|r| r.method.as_str()).collect();
        let answers = answers.map_or_else(Vec::new, |a| answers_in(a, &methods));
        for (i, asked) in found.into_iter().enumerate() {
            let time = marks
                .iter()
                .take_while(|(at, _)| *at <= asked.at)
                .last()
                .map_or(Duration::ZERO, |m| m.1);
            let (status, bytes) = answers.get(i).copied().unwrap_or((499, 0));
            out.push(Request {
                time,
                client: client.0,
                line: asked.line,
                status,
                bytes,
                referer: asked.referer,
                agent: asked.agent,
            });
        }
    }
    out.sort_by_key(|r| r.time);
    out
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::packet::*;

    const CLIENT: &str = "192.0.2.10";
    const SERVER: &str = "198.51.100.80";

    fn segment(from_client: bool, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
        let (src, dst, sport, dport) = if from_client {
            (CLIENT, SERVER, 51000u16, 80u16)
        } else {
            (SERVER, CLIENT, 80, 51000)
        };
        let mut tcp = vec![0u8; 20];
        tcp[0..2].copy_from_slice(&sport.to_be_bytes());
        tcp[2..4].copy_from_slice(&dport.to_be_bytes());
        tcp[4..8].copy_from_slice(&seq.to_be_bytes());
        tcp[12] = 5 << 4;
        tcp[13] = flags;
        tcp.extend_from_slice(payload);
        let ip = ipv4(
            src.parse::<Ipv4Addr>().unwrap(),
            dst.parse().unwrap(),
            &V4Opts::default(),
            &L4::Raw {
                proto: 6,
                bytes: tcp,
            },
        );
        let mut f = frame(&[], ip);
        // Ethernet padding must not be read as data.
        f.extend([0u8; 6]);
        f
    }

    fn at(ms: u64, f: Vec<u8>) -> (Duration, Vec<u8>) {
        (Duration::from_millis(ms), f)
    }

    fn requests(frames: &[(Duration, Vec<u8>)]) -> Vec<Request> {
        super::requests(frames.iter().map(|(t, f)| (*t, f.as_slice())))
    }

    const FIRST: &[u8] =
        b"GET /cart HTTP/1.1\r\nHost: shop\r\nUser-Agent: curl/8\r\nReferer: http://shop/\r\n\r\n";
    const SECOND: &[u8] = b"POST /login HTTP/1.1\r\nContent-Length: 5\r\n\r\nab=cd";
    const THIRD: &[u8] = b"HEAD / HTTP/1.1\r\n\r\n";

    #[test]
    fn requests_are_read_across_segments_out_of_order_and_paired_with_answers() {
        let (c, s) = (1000u32, 5000u32);
        let two = [SECOND, THIRD].concat();
        let chunked =
            b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nbody";
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n";
        let c1 = c + 1 + FIRST.len() as u32;
        let frames = [
            at(0, segment(true, c, TCP_SYN, b"")),
            at(1, segment(false, s, TCP_SYN | TCP_ACK, b"")),
            at(2, segment(true, c + 1, TCP_ACK, &FIRST[..10])),
            // The rest of the first request arrives after a retransmission
            // of its start, and the second request before it.
            at(3, segment(true, c1, TCP_ACK, &two)),
            at(4, segment(true, c + 1, TCP_ACK, FIRST)),
            at(5, segment(false, s + 1, TCP_ACK, ok)),
            at(6, segment(false, s + 1 + ok.len() as u32, TCP_ACK, chunked)),
            at(
                7,
                segment(
                    false,
                    s + 1 + (ok.len() + chunked.len()) as u32,
                    TCP_ACK,
                    head,
                ),
            ),
        ];
        let got = requests(&frames);
        let lines: Vec<(&str, u16, u64)> = got
            .iter()
            .map(|r| (r.line.as_str(), r.status, r.bytes))
            .collect();
        assert_eq!(
            lines,
            [
                ("GET /cart HTTP/1.1", 200, 4),
                ("POST /login HTTP/1.1", 404, 3 + 5 + 3 + 2),
                ("HEAD / HTTP/1.1", 200, 0),
            ]
        );
        assert_eq!(got[0].time, Duration::from_millis(2));
        assert_eq!(got[1].time, Duration::from_millis(3));
        assert_eq!(got[0].agent.as_deref(), Some("curl/8"));
        assert_eq!(got[0].referer.as_deref(), Some("http://shop/"));
        assert_eq!(got[0].client, CLIENT.parse::<IpAddr>().unwrap());
    }

    #[test]
    fn a_reused_address_and_port_pair_is_a_new_connection_at_each_syn() {
        let ok = b"HTTP/1.1 204 No Content\r\n\r\n";
        let switch = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x00";
        let mut frames = Vec::new();
        for (n, (c, s, answer)) in [
            (1000u32, 5000u32, &ok[..]),
            (9_000_000, 70_000, &switch[..]),
        ]
        .into_iter()
        .enumerate()
        {
            let t = n as u64 * 10;
            frames.push(at(t, segment(true, c, TCP_SYN, b"")));
            frames.push(at(t + 1, segment(false, s, TCP_SYN | TCP_ACK, b"")));
            frames.push(at(t + 2, segment(true, c + 1, TCP_ACK, THIRD)));
            frames.push(at(t + 3, segment(false, s + 1, TCP_ACK, answer)));
        }
        let got: Vec<(u16, Duration)> = requests(&frames)
            .iter()
            .map(|r| (r.status, r.time))
            .collect();
        assert_eq!(
            got,
            [
                (204, Duration::from_millis(2)),
                (101, Duration::from_millis(12))
            ]
        );
    }

    #[test]
    fn unanswered_requests_are_499_and_other_protocols_give_none() {
        let frames = [
            at(0, segment(true, 1, TCP_ACK, FIRST)),
            // The server answers with something that is not HTTP.
            at(
                1,
                segment(false, 9, TCP_ACK, &[0x16, 3, 1, 0, 5, 1, 0, 0, 1, 0]),
            ),
        ];
        let got = requests(&frames);
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].status, got[0].bytes), (499, 0));
    }
}
