//! Generates the daemon ↔ monitor protocol types from `proto/monitor.proto`
//! (the CRI types come generated from the `k8s-cri` crate).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/monitor.proto");
    prost_build::Config::new().compile_protos(&["proto/monitor.proto"], &["proto"])?;
    Ok(())
}
