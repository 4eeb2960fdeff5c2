//! Prometheus metrics for `isol watch --metrics`: counters and net-duration histograms per
//! CPU and kind, served over plain HTTP from a housekeeping CPU.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use isol::interrupt::{Interruption, Pod, Record};
use isol::kernel::Place;

use crate::Failure;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    cpu: String,
    kind: String,
}

/// The histogram's labels: the kind only (per CPU, 14 series a kind would make it most of
/// a large machine's series; per-CPU counts are in `isol_interruptions_total`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindOnly {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CpuLabels {
    cpu: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PodLabels {
    cpu: String,
    namespace: String,
    pod: String,
}

/// Pods given series of their own: those seen first. Later ones count together as
/// `pod="_other"` (docs/metrics.md), so a churning node cannot grow the series without end.
pub const MAX_PODS: usize = 64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TickLabels {
    cpu: String,
    dependency: String,
}

/// How long a client may take to send its request and take the answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections held at once. One more evicts the oldest: a scraper sends its request as
/// soon as it connects and is answered at once, so only connections that hold a place
/// without a request (or without reading their answer) are ever evicted.
const MAX_CLIENTS: usize = 64;
/// Connections held at once from one address other than loopback.
const MAX_PER_PEER: usize = 8;
/// The longest request head read.
const MAX_REQUEST: usize = 8192;

/// One client: reading its request, then writing its answer.
struct Client {
    stream: TcpStream,
    peer: std::net::IpAddr,
    since: Instant,
    head: Vec<u8>,
    answer: Vec<u8>,
    sent: usize,
}

impl Client {
    fn answering(&self) -> bool {
        !self.answer.is_empty()
    }

    /// Read what the client sent; once its request head is complete, make the answer.
    /// Returns false when the client is done with (closed, failed, or sent too much).
    fn read(&mut self, registry: &Mutex<Registry>) -> bool {
        let mut buf = [0u8; 2048];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return false,
                Ok(n) => {
                    self.head.extend_from_slice(&buf[..n]);
                    if self.head.windows(4).any(|w| w == b"\r\n\r\n") {
                        self.answer = answer(registry);
                        return true;
                    }
                    if self.head.len() >= MAX_REQUEST {
                        return false;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
    }

    /// Write what is left of the answer. Returns false when done (written or failed).
    fn write(&mut self) -> bool {
        while self.sent < self.answer.len() {
            match self.stream.write(&self.answer[self.sent..]) {
                Ok(0) => return false,
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        false
    }
}

/// The HTTP answer: every metric, in the OpenMetrics text format.
fn answer(registry: &Mutex<Registry>) -> Vec<u8> {
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
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Serve every client from one thread, without blocking on any of them: accept promptly,
/// answer each complete request as soon as it is read, drop a client past its deadline,
/// and when the places are full make room by dropping the oldest client (from the same
/// address first, for addresses other than loopback). A scraper that sends its request
/// when it connects is answered whatever other connections do.
fn serve(listener: TcpListener, registry: Arc<Mutex<Registry>>) {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    if listener.set_nonblocking(true).is_err() {
        return;
    }
    let mut clients: Vec<Client> = Vec::new();
    loop {
        let ready: Vec<(bool, bool)> = {
            let mut fds = Vec::with_capacity(clients.len() + 1);
            fds.push(PollFd::new(&listener, PollFlags::IN));
            for c in &clients {
                let want = if c.answering() {
                    PollFlags::OUT
                } else {
                    PollFlags::IN
                };
                fds.push(PollFd::new(&c.stream, want));
            }
            let tick = Timespec {
                tv_sec: 1,
                tv_nsec: 0,
            };
            match poll(&mut fds, Some(&tick)) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(_) => return,
            }
            fds.iter()
                .map(|f| {
                    let r = f.revents();
                    (
                        r.intersects(PollFlags::IN | PollFlags::HUP | PollFlags::ERR),
                        r.intersects(PollFlags::OUT | PollFlags::HUP | PollFlags::ERR),
                    )
                })
                .collect()
        };
        // Clients first (complete requests are answered before anyone new is let in),
        // then the deadline, then new connections.
        let mut keep = Vec::with_capacity(clients.len());
        for (mut c, (readable, writable)) in clients.drain(..).zip(ready[1..].iter().copied()) {
            let alive = if c.answering() {
                !writable || c.write()
            } else if readable {
                c.read(&registry) && (!c.answering() || c.write())
            } else {
                true
            };
            if alive && c.since.elapsed() < CLIENT_TIMEOUT {
                keep.push(c);
            }
        }
        clients = keep;
        if ready[0].0 {
            accept_all(&listener, &mut clients, &registry);
        }
    }
}

/// Take every pending connection, making room as [`serve`] says.
fn accept_all(listener: &TcpListener, clients: &mut Vec<Client>, registry: &Mutex<Registry>) {
    loop {
        let (stream, peer) = match listener.accept() {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        if stream.set_nonblocking(true).is_err() {
            continue;
        }
        let peer = peer.ip();
        if !peer.is_loopback() {
            let same: Vec<usize> = (0..clients.len())
                .filter(|&i| clients[i].peer == peer)
                .collect();
            if same.len() >= MAX_PER_PEER {
                clients.remove(same[0]);
            }
        }
        if clients.len() >= MAX_CLIENTS {
            clients.remove(0);
        }
        let mut c = Client {
            stream,
            peer,
            since: Instant::now(),
            head: Vec::new(),
            answer: Vec::new(),
            sent: 0,
        };
        // The request is often there already: answer it now.
        if c.read(registry) && (!c.answering() || c.write()) {
            clients.push(c);
        }
    }
}

/// The metrics and the thread serving them.
pub struct Metrics {
    interruptions: Family<KindLabels, Counter>,
    seconds: Family<KindOnly, Histogram>,
    lost: Family<CpuLabels, Counter>,
    tick_kept: Family<TickLabels, Counter>,
    by_pod: Family<PodLabels, Counter>,
    pods: Mutex<std::collections::BTreeSet<(String, String)>>,
    /// Readiness (`isol check`) gauges, set by [`super::readiness::Gauges::keep_checking`].
    pub readiness: super::readiness::Gauges,
    addr: SocketAddr,
}

/// Connect to the exporter once, now. The first TCP connection of a boot makes the kernel
/// switch static keys on from a kworker, and each switch patches kernel code and
/// interrupts every CPU (9 IPIs on the lab's 6.12 kernel, once a boot: later connections,
/// even after a pause, cost nothing). Paid here, at start-up, where watch already
/// interrupts every CPU to switch its events on, it does not land on an isolated CPU at
/// the first scrape, hours into the workload. An unspecified address (`0.0.0.0`) is
/// reached through loopback.
fn pay_the_first_connection(addr: SocketAddr) {
    let mut to = addr;
    if to.ip().is_unspecified() {
        to.set_ip(match to {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    // The listener is not being served yet: the connection completes in the kernel's
    // backlog, and the server closes it at its first read (EOF, no request).
    let _ = TcpStream::connect_timeout(&to, Duration::from_secs(1));
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
        pay_the_first_connection(addr);
        let mut registry = Registry::default();
        let interruptions = Family::<KindLabels, Counter>::default();
        let seconds = Family::<KindOnly, Histogram>::new_with_constructor(|| {
            // 100 ns .. ~100 ms.
            Histogram::new(exponential_buckets(1e-7, 4.0, 11))
        });
        let lost = Family::<CpuLabels, Counter>::default();
        let tick_kept = Family::<TickLabels, Counter>::default();
        let by_pod = Family::<PodLabels, Counter>::default();
        registry.register(
            "isol_interruptions",
            "Interruptions of a watched CPU",
            interruptions.clone(),
        );
        registry.register(
            "isol_interruption_seconds",
            "Net duration of interruptions of the watched CPUs (nested ones subtracted), by kind",
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
        registry.register(
            "isol_pod_interruptions",
            "Interruptions of a watched CPU caused by a pod's task (the task that ran, or \
             the one that sent, queued or woke), by pod",
            by_pod.clone(),
        );
        let readiness = super::readiness::Gauges::register(&mut registry);
        let registry = Arc::new(Mutex::new(registry));
        std::thread::Builder::new()
            .name("isol-metrics".into())
            .spawn(move || serve(listener, registry))
            .map_err(|e| Failure::runtime(format!("--metrics: cannot start the server: {e}")))?;
        Ok(Metrics {
            interruptions,
            seconds,
            lost,
            tick_kept,
            by_pod,
            pods: Mutex::default(),
            readiness,
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
                    self.seconds
                        .get_or_create(&KindOnly {
                            kind: l.kind.clone(),
                        })
                        .observe(n as f64 / 1e9);
                }
                if let Some(pod) = culprit_pod(i) {
                    let (namespace, pod) = self.bounded(pod);
                    self.by_pod
                        .get_or_create(&PodLabels {
                            cpu: i.cpu.to_string(),
                            namespace,
                            pod,
                        })
                        .inc();
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

impl Metrics {
    /// `(namespace, pod)` labels for `pod`, or `("", "_other")` once [`MAX_PODS`] others
    /// have series.
    fn bounded(&self, pod: &Pod) -> (String, String) {
        let key = match (&pod.namespace, &pod.name) {
            (Some(ns), Some(n)) => (ns.clone(), n.clone()),
            // A pod kubelet's layout does not name: its uid.
            _ => (String::new(), pod.uid.clone()),
        };
        let mut seen = self.pods.lock().unwrap_or_else(|e| e.into_inner());
        if seen.contains(&key) {
            return key;
        }
        if seen.len() < MAX_PODS {
            seen.insert(key.clone());
            return key;
        }
        (String::new(), "_other".into())
    }
}

/// The pod whose task caused `i`: the task that ran, else the first sender (or the task a
/// kworker sent for) that lives in a pod.
fn culprit_pod(i: &Interruption) -> Option<&Pod> {
    fn pod(p: Option<&Place>) -> Option<&Pod> {
        p.and_then(|p| p.pod.as_ref())
    }
    pod(i.place.as_deref()).or_else(|| {
        i.senders.iter().find_map(|s| {
            pod(s.place.as_ref())
                .or_else(|| s.on_behalf.as_ref().and_then(|b| pod(b.place.as_ref())))
        })
    })
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
        assert!(body.contains(r#"isol_interruption_seconds_count{kind="ipi"} 2"#));
        assert!(body.trim_end().ends_with("# EOF"));
    }

    fn scrape(m: &Metrics) -> String {
        let mut s = std::net::TcpStream::connect(m.addr()).unwrap();
        s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        body
    }

    /// A kworker woken by a pod's task, and a pod's task that ran: each counts for its pod,
    /// and pods past the bound share one series.
    #[test]
    fn pods_get_series_up_to_the_bound() {
        let m = Metrics::serve("0").unwrap();
        let ran = |ns: &str, pod: &str| -> Record {
            serde_json::from_str(&format!(
                r#"{{"type":"interruption","cpu":1,"start_ns":5,"duration_ns":2500,"net_ns":2000,
                   "depth":0,"complete":true,"kind":"task","source":"l1","number":7,
                   "place":{{"pod":{{"uid":"u-{pod}","qos":"guaranteed","namespace":"{ns}","name":"{pod}"}}}}}}"#
            ))
            .unwrap()
        };
        let woken: Record = serde_json::from_str(
            r#"{"type":"interruption","cpu":1,"start_ns":5,"duration_ns":2500,"net_ns":2000,
                "depth":0,"complete":true,"kind":"task","source":"kworker/1:1","number":9,
                "senders":[{"cpu":0,"pid":7,"comm":"l1","context":"task","action":"wakeup",
                  "place":{"pod":{"uid":"0c4a","qos":"burstable"}}}]}"#,
        )
        .unwrap();
        m.observe(&ran("ran", "du-0"));
        m.observe(&ran("ran", "du-0"));
        m.observe(&woken);
        for n in 0..MAX_PODS + 3 {
            m.observe(&ran("churn", &format!("job-{n}")));
        }
        let body = scrape(&m);
        assert!(
            body.contains(r#"isol_pod_interruptions_total{cpu="1",namespace="ran",pod="du-0"} 2"#),
            "{body}"
        );
        // Unnamed by kubelet's layout: the uid.
        assert!(body.contains(r#"isol_pod_interruptions_total{cpu="1",namespace="",pod="0c4a"} 1"#));
        let series = body
            .lines()
            .filter(|l| l.starts_with("isol_pod_interruptions_total{"))
            .count();
        assert_eq!(series, MAX_PODS + 1, "{body}");
        // du-0, 0c4a and 62 jobs have series; the other 5 jobs share one.
        assert!(
            body.contains(r#"isol_pod_interruptions_total{cpu="1",namespace="",pod="_other"} 5"#)
        );
    }

    /// The series a 256-CPU machine makes, every CPU watched, in the worst case the
    /// bounds allow but for tick dependencies (3 sets a CPU; the kernel has 7 dependency
    /// bits): every kind on every CPU, lost events everywhere, 70 pods (5 past the
    /// bound), and readiness checked. `cargo test -p isol-cli --bin isol series_on -- --nocapture`
    /// prints the count (BENCHMARKS.md).
    #[test]
    fn series_on_256_cpus_stay_within_the_documented_bound() {
        let m = Metrics::serve("0").unwrap();
        let kinds = [
            "local_timer",
            "ipi",
            "apic",
            "irq",
            "softirq",
            "task",
            "nmi",
            "syscall",
            "page_fault",
        ];
        for cpu in 0..256 {
            for kind in kinds {
                let mut r = format!(
                    r#"{{"type":"interruption","cpu":{cpu},"start_ns":5,"duration_ns":2500,"net_ns":2000,"depth":0,"complete":true,"kind":"{kind}","source":"x"}}"#
                );
                if kind == "task" {
                    for pod in 0..70 {
                        r = format!(
                            r#"{{"type":"interruption","cpu":{cpu},"start_ns":5,"duration_ns":2500,"net_ns":2000,"depth":0,"complete":true,"kind":"task","source":"x","place":{{"pod":{{"uid":"u{pod}","qos":"guaranteed","namespace":"ns","name":"p{pod}"}}}}}}"#
                        );
                        m.observe(&serde_json::from_str(&r).unwrap());
                    }
                } else {
                    m.observe(&serde_json::from_str(&r).unwrap());
                }
            }
            m.observe(&Record::Lost {
                cpu,
                at_ns: 9,
                events: Some(1),
                reason: "full".into(),
            });
            for dependency in ["SCHED", "POSIX_TIMER", "SCHED|RCU"] {
                m.observe(&Record::TickStop {
                    cpu,
                    at_ns: 9,
                    success: false,
                    dependency: dependency.into(),
                });
            }
        }
        let lab = isol::SysRoot::at(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/lab-6.12"),
        );
        m.readiness
            .check(&lab, &isol::CpuSet::from_iter([1]), &[])
            .unwrap();
        let body = scrape(&m);
        let series = body
            .lines()
            .skip_while(|l| !l.is_empty())
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .count();
        // Per CPU: 9 kinds, lost, 3 dependency sets, 64 pods + _other. Whole machine: the
        // histogram (9 kinds x (11 buckets + +Inf + sum + count)), and readiness (50 checks,
        // verdict, last run, duration, runs, info, armed).
        let checks = isol::check::run(
            &isol::kernel::KernelModel::load(&lab),
            &isol::check::Target::choose(&isol::kernel::KernelModel::load(&lab), None).unwrap(),
        )
        .findings
        .len();
        let bound = 256 * (9 + 1 + 3 + MAX_PODS + 1) + 9 * 14 + checks + 6;
        eprintln!("series on 256 CPUs: {series} (documented worst case {bound})");
        assert_eq!(series, bound);
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

    /// A local user holding 200 idle connections, re-opened as fast as they are dropped,
    /// does not keep a scraper from its answer (16 such connections once made every scrape
    /// fail for 20 s).
    #[test]
    fn many_idle_clients_do_not_block_scrapes() {
        let m = Metrics::serve("0").unwrap();
        let addr = m.addr();
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        let stop = Arc::new(AtomicBool::new(false));
        let opened = Arc::new(AtomicU64::new(0));
        let holding = {
            let (stop, opened) = (stop.clone(), opened.clone());
            std::thread::spawn(move || {
                let mut held = std::collections::VecDeque::new();
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(s) = TcpStream::connect(addr) {
                        held.push_back(s);
                        opened.fetch_add(1, Ordering::Relaxed);
                    }
                    if held.len() > 200 {
                        held.pop_front();
                    }
                }
            })
        };
        // The scrapes begin once 200 idle connections are held.
        while opened.load(Ordering::Relaxed) < 200 {
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut answered = 0;
        for _ in 0..20 {
            let Ok(mut s) = TcpStream::connect(addr) else {
                continue;
            };
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            if s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").is_err() {
                continue;
            }
            let mut body = String::new();
            if s.read_to_string(&mut body).is_ok() && body.starts_with("HTTP/1.1 200 OK") {
                answered += 1;
            }
        }
        stop.store(true, Ordering::Relaxed);
        holding.join().unwrap();
        assert_eq!(answered, 20, "{answered} of 20 scrapes answered");
    }
}
