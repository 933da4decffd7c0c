//! `vaktctl`, the Vakt ops CLI. Everything lives in `vakt_collector::ctl`.
#![forbid(unsafe_code)]

fn main() {
    // tonic and rustls must agree on one crypto provider; installing it
    // explicitly avoids a runtime panic when more than one is linked in.
    let _ = rustls::crypto::ring::default_provider().install_default();
    std::process::exit(vakt_collector::ctl::main());
}
