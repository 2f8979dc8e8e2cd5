//! Harness shared by the end-to-end scenarios: the registry under test, the real clients, test
//! images, certificates and the helper daemons (nginx, containerd) each scenario starts privately.
// Each scenario file compiles this module on its own and uses only part of it.
#![allow(dead_code)]

pub mod cmd;
pub mod image;
pub mod registry;
pub mod tls;
