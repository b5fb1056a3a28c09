//! A fault-injecting TCP proxy for network-fault tests (SPEC §7 faults): it listens on a loopback
//! port and relays each connection to a server, and by a seeded schedule it drops connections
//! mid-response, truncates responses, delays them, and drops requests before they reach the server.
//! It knows nothing of HTTP: faults land anywhere in the byte stream, so they hit response heads,
//! bodies and chunked streams alike.
//!
//! The faults come from a finite budget: once it is spent the proxy relays faithfully, so a client
//! that retries always gets through in the end.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::Rng;

/// What the proxy does wrong, and how often.
#[derive(Clone, Copy, Debug)]
pub struct FaultPlan {
    /// Seeds the schedule (each connection draws from its own stream derived from it).
    pub seed: u64,
    /// Chance, in percent, that a chunk read from either side is hit by a fault.
    pub percent: u32,
    /// Most faults injected over the proxy's life; after that it relays faithfully.
    pub budget: u32,
    /// Longest delay a delay fault adds.
    pub max_delay: Duration,
}

/// The kinds of fault, as counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// A request chunk is not forwarded and the connection is closed: the server sees nothing, or
    /// part of a request.
    DropRequest,
    /// A response chunk is not forwarded and the connection is closed: the client has part of a
    /// response.
    DropResponse,
    /// A random prefix of a response chunk is forwarded, then the connection is closed.
    TruncateResponse,
    /// A response chunk is held back for a while, then forwarded.
    DelayResponse,
}

const KINDS: [Fault; 4] = [Fault::DropRequest, Fault::DropResponse, Fault::TruncateResponse, Fault::DelayResponse];

/// What the proxy has done so far.
#[derive(Debug, Default)]
struct Stats {
    connections: AtomicU64,
    spent: AtomicU32,
    by_kind: [AtomicU64; 4],
}

impl Stats {
    /// Take one fault from the budget, if any is left.
    fn spend(&self, budget: u32) -> bool {
        self.spent.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| (n < budget).then_some(n + 1)).is_ok()
    }

    fn count(&self, fault: Fault) {
        let i = KINDS.iter().position(|k| *k == fault).expect("a known kind");
        self.by_kind[i].fetch_add(1, Ordering::Relaxed);
    }
}

/// A running proxy. Stops (closing every relayed connection) when dropped.
pub struct FaultyProxy {
    addr: SocketAddr,
    stats: Arc<Stats>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl FaultyProxy {
    /// Listen on 127.0.0.1:0 and relay to `upstream` with faults by `plan`. Runs on the current tokio
    /// runtime.
    pub async fn start(upstream: SocketAddr, plan: FaultPlan) -> FaultyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0 for the proxy");
        let addr = listener.local_addr().expect("the proxy's address");
        let stats = Arc::new(Stats::default());
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let accepting = stats.clone();
        tokio::spawn(async move {
            let mut stopped = stopping.clone();
            loop {
                let accepted = tokio::select! {
                    _ = stopped.wait_for(|stop| *stop) => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((client, _)) = accepted else { continue };
                let n = accepting.connections.fetch_add(1, Ordering::Relaxed);
                let (stats, mut stopped) = (accepting.clone(), stopping.clone());
                tokio::spawn(async move {
                    tokio::select! {
                        _ = stopped.wait_for(|stop| *stop) => {}
                        () = relay(client, upstream, plan, n, stats) => {}
                    }
                });
            }
        });
        FaultyProxy { addr, stats, stop }
    }

    /// The proxy's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, to use in place of the server's URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Connections relayed so far.
    pub fn connections(&self) -> u64 {
        self.stats.connections.load(Ordering::Relaxed)
    }

    /// Faults injected so far, of one kind.
    pub fn faults_of(&self, kind: Fault) -> u64 {
        let i = KINDS.iter().position(|k| *k == kind).expect("a known kind");
        self.stats.by_kind[i].load(Ordering::Relaxed)
    }

    /// Faults injected so far, of every kind.
    pub fn faults(&self) -> u64 {
        KINDS.iter().map(|k| self.faults_of(*k)).sum()
    }
}

impl Drop for FaultyProxy {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Relay one connection until either side closes or a fault closes it.
async fn relay(client: TcpStream, upstream: SocketAddr, plan: FaultPlan, n: u64, stats: Arc<Stats>) {
    let Ok(server) = TcpStream::connect(upstream).await else { return };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let seed = plan.seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut requests = Rng::new(seed);
    let mut responses = Rng::new(!seed);
    let stats_up = stats.clone();
    let up = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if requests.chance(plan.percent) && stats_up.spend(plan.budget) {
                stats_up.count(Fault::DropRequest);
                return;
            }
            if server_write.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    let down = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match server_read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let mut chunk = &buf[..n];
            let mut close = false;
            if responses.chance(plan.percent) && stats.spend(plan.budget) {
                let fault = KINDS[1 + responses.below(3) as usize];
                stats.count(fault);
                match fault {
                    Fault::DropResponse => return,
                    Fault::TruncateResponse => {
                        chunk = &chunk[..responses.below(n as u64) as usize];
                        close = true;
                    }
                    Fault::DelayResponse => {
                        let ms = plan.max_delay.as_millis().max(1) as u64;
                        tokio::time::sleep(Duration::from_millis(1 + responses.below(ms))).await;
                    }
                    Fault::DropRequest => unreachable!("only response faults are drawn here"),
                }
            }
            if client_write.write_all(chunk).await.is_err() || close {
                return;
            }
        }
    };
    // Either direction ending ends the connection: both halves are dropped (closed) together.
    tokio::select! {
        () = up => {}
        () = down => {}
    }
}
