//! loka-stratum: a small Stratum V1 mining proxy for ARM home-mining gateways.
