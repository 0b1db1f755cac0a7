//! loka-stratum: a small Stratum V1 mining proxy for ARM home-mining gateways.

pub mod config;
pub mod session;
pub mod stats;
pub mod stratum;
pub mod upstream;
pub mod worker;
