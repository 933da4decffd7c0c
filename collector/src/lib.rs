//! The Vakt collector (authenticate → validate → store → evaluate → notify) and
//! `vaktctl`, the ops CLI that reads from it.
#![forbid(unsafe_code)]

pub mod alerts;
pub mod authz;
pub mod ca;
pub mod config;
pub mod ctl;
pub mod error;
pub mod fleet;
pub mod gateway;
pub mod http;
pub mod init;
pub mod metrics;
pub mod queries;
pub mod quickstart;
pub mod ratelimit;
pub mod server;
pub mod service;
pub mod store;
pub mod tokens;

/// Resolves on Ctrl-C or SIGTERM (systemd's stop), whichever comes first.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}
