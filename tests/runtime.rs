//! `simgate serve` in both runtime models (`server.runtime`,
//! `server.workers`): the real binary on loopback, requests on fresh
//! connections (so SO_REUSEPORT spreads them over the workers' listeners),
//! what the upstream received, the admin listener beside them, and a clean
//! stop on SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::upstream::Recording;

const REQUESTS: usize = 24;

/// Starts the binary, returns it and the addresses from its "simgate
/// listening" and "admin listening" lines.
fn spawn(config: &str, dir: &std::path::Path) -> (Child, String, String) {
    let path = dir.join("simgate.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_simgate"))
        .args(["serve", "--log-format", "json", "--config"])
        .arg(&path)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    // Keep draining the log so the gateway never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            if let Ok(v) = serde_json::from_str::<Value>(&line)
                && let Some(message) = v["message"].as_str()
                && message.contains("listening")
            {
                let addr = v["addr"].as_str().unwrap_or_default().to_owned();
                let _ = tx.send((message.starts_with("admin"), addr));
            }
        }
    });
    let (mut api, mut admin) = (None, None);
    while api.is_none() || admin.is_none() {
        let (is_admin, addr) = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("gateway and admin listening");
        if is_admin {
            admin = Some(addr);
        } else {
            api = Some(addr);
        }
    }
    (child, api.unwrap(), admin.unwrap())
}

fn thread_names(pid: u32) -> Vec<String> {
    let mut names = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let comm = task.unwrap().path().join("comm");
        if let Ok(name) = std::fs::read_to_string(comm) {
            names.push(name.trim().to_owned());
        }
    }
    names
}

/// SIGTERM, then the exit status within 20 s (SIGKILL and fail after that).
fn stop(mut child: Child) -> std::process::ExitStatus {
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("simgate did not stop within 20 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn run(server_extra: &str, workers: usize, expect_worker_threads: usize) {
    let up = Recording::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nmode = \"passthrough\"\nworkers = {workers}\n{server_extra}\n\
         [upstream]\nurl = \"{}\"\n[admin]\nlisten = \"127.0.0.1:0\"\n",
        up.url()
    );
    let (child, addr, admin) = spawn(&config, dir.path());
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    let named = thread_names(child.id())
        .iter()
        .filter(|n| n.starts_with("simgate-worker"))
        .count();
    assert_eq!(named, expect_worker_threads);

    for i in 0..REQUESTS {
        // A fresh connection each time: the kernel picks a listener per connection.
        let res = support::http::raw(
            addr,
            format!(
                "GET /sim-integrations/v1?n={i} HTTP/1.1\r\nHost: x\r\nX-Request-Id: rt-{i}\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .await;
        assert_eq!(support::http::raw_status(&res), 200, "{res}");
        assert!(res.contains(&format!("x-request-id: rt-{i}")), "{res}");
    }
    let seen = up.seen();
    assert_eq!(seen.len(), REQUESTS);
    for (i, s) in seen.iter().enumerate() {
        assert_eq!(s.uri.query(), Some(format!("n={i}").as_str()));
        assert_eq!(s.headers["x-request-id"], format!("rt-{i}").as_str());
    }

    // The admin listener runs beside the workers (on the control runtime in per-core).
    let res = support::http::raw(
        admin.parse().unwrap(),
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(support::http::raw_status(&res), 200, "{res}");
    assert_eq!(up.count(), REQUESTS);

    let status = stop(child);
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_core_workers_share_one_port_and_stop_on_sigterm() {
    run("", 3, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_stealing_runtime_serves_and_stops_on_sigterm() {
    run("runtime = \"work-stealing\"", 2, 0).await;
}

#[tokio::test]
async fn refuses_zero_workers_before_listening() {
    let up = Recording::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("simgate.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nworkers = 0\n[upstream]\nurl = \"{}\"\n",
            up.url()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_simgate"))
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("server.workers"), "{err}");
    assert_eq!(up.count(), 0);
}
