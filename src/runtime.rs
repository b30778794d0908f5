//! How `simgate serve` puts the gateway on threads (`server.runtime`,
//! `server.workers`).
//!
//! - `per-core` (the default): `workers` threads, each running its own
//!   current-thread tokio runtime and its own listening socket, all bound to
//!   the same address with `SO_REUSEPORT`, so the kernel spreads new
//!   connections over the threads and a request stays on one thread from
//!   accept to response (the model of nginx and Pingora). No task is ever
//!   stolen, so there is no cross-thread wake-up on the request path.
//! - `work-stealing`: one listener on tokio's multi-thread runtime with
//!   `workers` worker threads.
//!
//! `workers` defaults to the number of cores the process may run on (its
//! CPU affinity mask, so `taskset -c 0` gives one worker). Both models serve
//! the one [`Gateway`] value built at start-up: every worker shares its
//! state (token cache, rate limits, audit trail, upstream pool).
//!
//! In `per-core`, a small control runtime on the main thread builds the
//! gateway, runs its background tasks (rate-limit eviction, JWKS polling,
//! reloads on SIGHUP) and the admin listener (`[admin]`, metrics and health for operators), waits for
//! SIGINT/SIGTERM and then stops every worker with the usual grace period.
//! A worker that cannot start (its listener, its TLS set-up) stops them all
//! and `serve` returns that error.
//!
//! Refuses (in the config): `workers = 0`, an unknown `runtime`. Refuses at
//! start: an address that cannot be bound, naming it.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::thread::JoinHandle;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::{mpsc, watch};

use crate::body::BoxError;
use crate::config::{Config, RuntimeModel};
use crate::stack::Gateway;

/// Pending connections per listener, as tokio's `TcpListener::bind`.
const BACKLOG: i32 = 1024;

/// Runs the gateway until SIGINT/SIGTERM, in the configured runtime model.
pub(crate) fn serve(config: Config) -> Result<(), BoxError> {
    let workers = config
        .server
        .workers
        .or_else(|| std::thread::available_parallelism().ok())
        .unwrap_or(NonZeroUsize::MIN);
    match config.server.runtime {
        RuntimeModel::WorkStealing => work_stealing(config, workers),
        RuntimeModel::PerCore => per_core(config, workers),
    }
}

fn work_stealing(config: Config, workers: NonZeroUsize) -> Result<(), BoxError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers.get())
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let gateway = Gateway::from_config(config)?;
        // Before the listener opens: a SIGHUP from then on reloads.
        tokio::spawn(crate::reload::on_sighup(gateway.clone())?);
        let admin = crate::admin::start_configured(&gateway).await?;
        let running = crate::server::start(gateway).await?;
        tracing::info!(
            addr = %running.local_addr(), workers, runtime = "work-stealing",
            "simgate listening"
        );
        let stop = running.stopper();
        tokio::spawn(async move {
            crate::server::shutdown_signal().await;
            tracing::info!("shutting down");
            let _ = stop.send(true);
        });
        running.wait().await;
        if let Some(admin) = admin {
            admin.shutdown().await;
        }
        Ok(())
    })
}

fn per_core(config: Config, workers: NonZeroUsize) -> Result<(), BoxError> {
    let control = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Background tasks the gateway spawns land on the control runtime, which
    // runs them while the main thread waits for the shutdown signal below.
    let gateway = {
        let _on_control = control.enter();
        let gateway = Gateway::from_config(config)?;
        // Reloads run on the control runtime too; the handler is installed
        // before the listeners open, so a SIGHUP from then on reloads.
        control.spawn(crate::reload::on_sighup(gateway.clone())?);
        gateway
    };
    // The admin listener (when configured) also runs on the control runtime.
    let admin = control.block_on(crate::admin::start_configured(&gateway))?;
    let listeners = bind_all(gateway.config().server.listen, workers)?;
    let addr = listeners.first().map(std::net::TcpListener::local_addr);

    let (stop, stopped) = watch::channel(false);
    let (exited, mut exits) = mpsc::unbounded_channel::<Result<(), String>>();
    let (ready, readies) = std::sync::mpsc::channel::<Result<(), String>>();
    let mut threads: Vec<JoinHandle<()>> = Vec::with_capacity(listeners.len());
    for (i, listener) in listeners.into_iter().enumerate() {
        let worker = Worker {
            listener,
            gateway: gateway.clone(),
            stopped: stopped.clone(),
            ready: ready.clone(),
        };
        let exited = exited.clone();
        let thread = std::thread::Builder::new()
            .name(format!("simgate-worker-{i}"))
            .spawn(move || {
                let result = worker.run().map_err(|e| e.to_string());
                let _ = exited.send(result);
            });
        match thread {
            Ok(t) => threads.push(t),
            Err(e) => {
                let _ = stop.send(true);
                join(threads);
                return Err(format!("cannot start worker thread {i}: {e}").into());
            }
        }
    }
    drop((ready, exited));

    // Every worker has its listener registered and its stack built, or one
    // failed: report before anyone is told we listen.
    let mut failure = None;
    for _ in 0..threads.len() {
        match readies.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                failure = Some(e);
                break;
            }
            Err(_) => {
                failure = Some("a worker thread stopped while starting".to_owned());
                break;
            }
        }
    }
    if let Some(e) = failure {
        let _ = stop.send(true);
        join(threads);
        return Err(e.into());
    }
    if let Some(Ok(addr)) = addr {
        tracing::info!(%addr, workers, runtime = "per-core", "simgate listening");
    }

    let first_exit = control.block_on(async {
        tokio::select! {
            _ = crate::server::shutdown_signal() => {
                tracing::info!("shutting down");
                None
            }
            exit = exits.recv() => exit,
        }
    });
    let _ = stop.send(true);
    join(threads);
    if let Some(admin) = admin {
        control.block_on(admin.shutdown());
    }
    match first_exit {
        Some(Err(e)) => Err(e.into()),
        Some(Ok(())) => Err("a worker stopped on its own".into()),
        None => Ok(()),
    }
}

fn join(threads: Vec<JoinHandle<()>>) {
    for t in threads {
        if t.join().is_err() {
            tracing::error!("a worker thread panicked");
        }
    }
}

/// One worker thread's share: its listener, the shared gateway, the stop
/// signal, and where to say it is ready.
struct Worker {
    listener: std::net::TcpListener,
    gateway: Gateway,
    stopped: watch::Receiver<bool>,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
}

impl Worker {
    fn run(self) -> Result<(), BoxError> {
        let Worker {
            listener,
            gateway,
            mut stopped,
            ready,
        } = self;
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                let _ = ready.send(Err(format!("cannot build a worker runtime: {e}")));
                return Err(e.into());
            }
        };
        runtime.block_on(async move {
            let started = tokio::net::TcpListener::from_std(listener)
                .map_err(BoxError::from)
                .and_then(|l| crate::server::start_on(l, gateway));
            let running = match started {
                Ok(r) => r,
                Err(e) => {
                    let _ = ready.send(Err(e.to_string()));
                    return Err(e);
                }
            };
            let _ = ready.send(Ok(()));
            let stop = running.stopper();
            tokio::spawn(async move {
                // Also when the sender is gone: the process is stopping.
                let _ = stopped.wait_for(|s| *s).await;
                let _ = stop.send(true);
            });
            running.wait().await;
            Ok(())
        })
    }
}

/// `workers` listening sockets on `addr` with `SO_REUSEPORT`; the first one
/// picks the port when `addr` asks for port 0, the others bind that port.
fn bind_all(
    addr: SocketAddr,
    workers: NonZeroUsize,
) -> Result<Vec<std::net::TcpListener>, BoxError> {
    let first = bind_reuseport(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let bound = first.local_addr()?;
    let mut all = vec![first];
    for _ in 1..workers.get() {
        all.push(bind_reuseport(bound).map_err(|e| format!("cannot listen on {bound}: {e}"))?);
    }
    Ok(all)
}

fn bind_reuseport(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn server(extra: &str) -> Result<crate::config::ServerConfig, crate::error::ConfigError> {
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n{extra}\n[upstream]\nurl = \"http://127.0.0.1:1\"\n"
        );
        Config::parse(&text, Path::new("/etc/simgate/simgate.toml")).map(|c| c.server)
    }

    #[test]
    fn per_core_is_the_default_and_workers_follow_the_cores() {
        let s = server("").unwrap();
        assert_eq!(s.runtime, RuntimeModel::PerCore);
        assert_eq!(s.workers, None);
        let s = server("runtime = \"work-stealing\"\nworkers = 3").unwrap();
        assert_eq!(s.runtime, RuntimeModel::WorkStealing);
        assert_eq!(s.workers, NonZeroUsize::new(3));
    }

    #[test]
    fn refuses_zero_workers_and_unknown_runtimes() {
        let e = server("workers = 0").unwrap_err();
        assert!(e.0.contains("server.workers"), "{e}");
        let e = server("runtime = \"green-threads\"").unwrap_err();
        assert!(e.0.contains("server.runtime"), "{e}");
    }

    #[test]
    fn every_worker_listens_on_the_same_port() {
        let all = bind_all(
            "127.0.0.1:0".parse().unwrap(),
            NonZeroUsize::new(3).unwrap(),
        )
        .unwrap();
        let ports: Vec<u16> = all.iter().map(|l| l.local_addr().unwrap().port()).collect();
        assert_eq!(ports.len(), 3);
        assert!(
            ports[0] != 0 && ports.iter().all(|p| *p == ports[0]),
            "{ports:?}"
        );
    }
}
