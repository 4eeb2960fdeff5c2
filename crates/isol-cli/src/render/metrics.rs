//! Prometheus metrics for `isol watch --metrics`: counters and net-duration histograms per
//! CPU and kind, served over plain HTTP from a housekeeping CPU.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use isol::interrupt::Record;

use crate::Failure;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    cpu: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CpuLabels {
    cpu: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TickLabels {
    cpu: String,
    dependency: String,
}

/// How long a client may take to send its request, or to take the answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// Clients served at once; more are answered 503 at once.
const MAX_CLIENTS: usize = 16;
/// The longest request head read.
const MAX_REQUEST: usize = 8192;

/// Serve each client on its own thread, with timeouts: an idle or slow client holds only
/// its own thread, never the others' scrapes.
fn accept_loop(listener: TcpListener, registry: Arc<Mutex<Registry>>) {
    let active = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming().flatten() {
        if active.fetch_add(1, Ordering::AcqRel) >= MAX_CLIENTS {
            active.fetch_sub(1, Ordering::AcqRel);
            let mut stream = stream;
            let _ = stream.set_write_timeout(Some(CLIENT_TIMEOUT));
            let _ = stream.write_all(
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
            continue;
        }
        let (registry, done) = (registry.clone(), active.clone());
        let spawned = std::thread::Builder::new()
            .name("isol-metrics-client".into())
            .spawn(move || {
                serve_client(stream, &registry);
                done.fetch_sub(1, Ordering::AcqRel);
            });
        if spawned.is_err() {
            active.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

fn serve_client(mut stream: TcpStream, registry: &Mutex<Registry>) {
    let _ = stream.set_write_timeout(Some(CLIENT_TIMEOUT));
    // Read the request head, with one deadline for all of it.
    let deadline = Instant::now() + CLIENT_TIMEOUT;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REQUEST {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    if head.is_empty() {
        return;
    }
    let mut body = String::new();
    let ok = {
        let r = registry.lock().unwrap_or_else(|p| p.into_inner());
        encode(&mut body, &r).is_ok()
    };
    let status = if ok {
        "200 OK"
    } else {
        "500 Internal Server Error"
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// The metrics and the thread serving them.
pub struct Metrics {
    interruptions: Family<KindLabels, Counter>,
    seconds: Family<KindLabels, Histogram>,
    lost: Family<CpuLabels, Counter>,
    tick_kept: Family<TickLabels, Counter>,
    addr: SocketAddr,
}

/// `9184` -> 127.0.0.1:9184; anything with a host part is taken as given.
pub fn parse_addr(text: &str) -> Result<SocketAddr, Failure> {
    let full = if text.parse::<u16>().is_ok() {
        format!("127.0.0.1:{text}")
    } else {
        text.to_string()
    };
    full.parse().map_err(|_| {
        Failure::usage(format!(
            "--metrics {text:?}: give a port (9184) or an address and port (127.0.0.1:9184)"
        ))
    })
}

impl Metrics {
    /// Bind `addr` and serve `/metrics` from a background thread.
    pub fn serve(addr: &str) -> Result<Metrics, Failure> {
        let want = parse_addr(addr)?;
        let listener = TcpListener::bind(want)
            .map_err(|e| Failure::runtime(format!("--metrics: cannot listen on {want}: {e}")))?;
        let addr = listener.local_addr().unwrap_or(want);
        let mut registry = Registry::default();
        let interruptions = Family::<KindLabels, Counter>::default();
        let seconds = Family::<KindLabels, Histogram>::new_with_constructor(|| {
            // 100 ns .. ~100 ms.
            Histogram::new(exponential_buckets(1e-7, 4.0, 11))
        });
        let lost = Family::<CpuLabels, Counter>::default();
        let tick_kept = Family::<TickLabels, Counter>::default();
        registry.register(
            "isol_interruptions",
            "Interruptions of a watched CPU",
            interruptions.clone(),
        );
        registry.register(
            "isol_interruption_seconds",
            "Net duration of interruptions (nested ones subtracted)",
            seconds.clone(),
        );
        registry.register(
            "isol_lost_events",
            "Trace events the kernel dropped (buffer full)",
            lost.clone(),
        );
        registry.register(
            "isol_tick_kept",
            "Failed nohz_full tick stops, by the dependency that kept the tick",
            tick_kept.clone(),
        );
        let registry = Arc::new(Mutex::new(registry));
        std::thread::Builder::new()
            .name("isol-metrics".into())
            .spawn(move || accept_loop(listener, registry))
            .map_err(|e| Failure::runtime(format!("--metrics: cannot start the server: {e}")))?;
        Ok(Metrics {
            interruptions,
            seconds,
            lost,
            tick_kept,
            addr,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Count one record.
    pub fn observe(&self, r: &Record) {
        match r {
            Record::Interruption(i) => {
                let l = KindLabels {
                    cpu: i.cpu.to_string(),
                    kind: i.kind.as_str().to_string(),
                };
                self.interruptions.get_or_create(&l).inc();
                if let Some(n) = i.net_ns {
                    self.seconds.get_or_create(&l).observe(n as f64 / 1e9);
                }
            }
            Record::Lost { cpu, events, .. } => {
                self.lost
                    .get_or_create(&CpuLabels {
                        cpu: cpu.to_string(),
                    })
                    .inc_by(events.unwrap_or(1));
            }
            Record::TickStop {
                cpu,
                success: false,
                dependency,
                ..
            } => {
                self.tick_kept
                    .get_or_create(&TickLabels {
                        cpu: cpu.to_string(),
                        dependency: dependency.clone(),
                    })
                    .inc();
            }
            Record::TickStop { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_port_binds_to_loopback() {
        assert_eq!(parse_addr("9184").unwrap().to_string(), "127.0.0.1:9184");
        assert_eq!(parse_addr("0.0.0.0:80").unwrap().to_string(), "0.0.0.0:80");
        assert!(parse_addr("nope").is_err());
    }

    #[test]
    fn records_are_served_as_openmetrics() {
        let m = Metrics::serve("0").unwrap();
        assert!(m.addr().ip().is_loopback());
        let i: Record = serde_json::from_str(
            r#"{"type":"interruption","cpu":1,"start_ns":5,"duration_ns":2500,"net_ns":2000,
                "depth":0,"complete":true,"kind":"ipi","source":"reschedule"}"#,
        )
        .unwrap();
        m.observe(&i);
        m.observe(&i);
        m.observe(&Record::Lost {
            cpu: 1,
            at_ns: 9,
            events: Some(7),
            reason: "full".into(),
        });
        m.observe(&Record::TickStop {
            cpu: 1,
            at_ns: 9,
            success: false,
            dependency: "SCHED".into(),
        });
        let mut s = std::net::TcpStream::connect(m.addr()).unwrap();
        s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
        assert!(
            body.contains(r#"isol_interruptions_total{cpu="1",kind="ipi"} 2"#),
            "{body}"
        );
        assert!(
            body.contains(r#"isol_lost_events_total{cpu="1"} 7"#),
            "{body}"
        );
        assert!(body.contains(r#"isol_tick_kept_total{cpu="1",dependency="SCHED"} 1"#));
        assert!(body.contains(r#"isol_interruption_seconds_count{cpu="1",kind="ipi"} 2"#));
        assert!(body.trim_end().ends_with("# EOF"));
    }

    #[test]
    fn an_idle_client_does_not_block_a_scrape() {
        let m = Metrics::serve("0").unwrap();
        // Two clients connect and say nothing; a third scrapes.
        let _idle = std::net::TcpStream::connect(m.addr()).unwrap();
        let mut slow = std::net::TcpStream::connect(m.addr()).unwrap();
        slow.write_all(b"GET /met").unwrap();
        let mut s = std::net::TcpStream::connect(m.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
    }
}
