//! The reference SIM Integrations API (`simgate upstream`).
//!
//! (Being written: this placeholder answers 501 to everything.)

use std::future::Future;

use tokio::net::TcpListener;

/// Serves the reference API on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let _ = listener;
    shutdown.await;
    Ok(())
}
