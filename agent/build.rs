//! Link options for the agent as it ships: a static-pie for the musl target
//! (`docs/BENCHMARKS.md`, "Agent footprint"; `tests/bench/footprint.sh` and
//! `deploy/package.sh` build it). Other targets (the glibc builds the tests
//! use) link as usual.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os == "linux" && env == "musl" {
        // Packed relative relocations (DT_RELR, applied by musl's static-pie
        // start-up code since musl 1.2.4): a PIE's ~8,500 relative
        // relocations take ~200 KB as RELA entries, which are read at
        // start-up and then stay resident; as RELR they take ~2 KB.
        println!("cargo:rustc-link-arg-bin=vakt-agent=-Wl,-z,pack-relative-relocs");
    }
}
