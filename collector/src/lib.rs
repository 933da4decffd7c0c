//! The Vakt collector (authenticate → validate → store → evaluate → notify) and
//! `vaktctl`, the ops CLI that reads from it.
#![forbid(unsafe_code)]

pub mod authz;
pub mod ca;
pub mod config;
pub mod ctl;
pub mod error;
pub mod fleet;
pub mod http;
pub mod init;
pub mod metrics;
pub mod server;
pub mod service;
pub mod store;
pub mod tokens;
