//! Compiles `vakt/v1/*.proto` with protox (pure Rust, no system `protoc`) and
//! generates the prost types and tonic services into OUT_DIR, plus the encoded
//! descriptor set that server reflection serves.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "vakt/v1/common.proto",
        "vakt/v1/gateway.proto",
        "vakt/v1/enrollment.proto",
        "vakt/v1/telemetry.proto",
        "vakt/v1/fleet.proto",
        "vakt/v1/admin.proto",
        "vakt/v1/alerts.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["."])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("vakt_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Smaller per-call buffers: one long-lived stream per agent (src/codec.rs).
        .codec_path("crate::codec::SmallBufferCodec")
        .compile_fds(descriptors)?;
    Ok(())
}
