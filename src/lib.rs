//! loka-stratum: a small Stratum V1 mining proxy for ARM home-mining gateways.
//!
//! Miners connect to the gateway; each miner gets its own connection to the
//! pool. Lines flow one way through the layers and back:
//! socket -> [`frame`] -> [`stratum`] -> [`session`] (with its [`upstream`])
//! -> socket. Everything runs on one thread, on a `smol` `LocalExecutor`
//! ([`daemon`]), and session logic does no I/O.

#![warn(missing_docs)]

pub mod alerts;
pub mod check;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod frame;
pub mod history;
pub mod http;
pub mod journal;
pub mod listen;
pub mod metrics;
pub mod net;
pub mod pools;
pub mod proxy;
pub mod rt;
pub mod sd_notify;
pub mod session;
pub mod stats;
pub mod status;
pub mod store;
pub mod stratum;
pub mod trim;
pub mod upstream;
pub mod web;
pub mod worker;
