//! `make schema`: writes the JSON Schema and the configuration reference generated from the
//! tables of `filter/src/config/fields.rs` (`jwt_filter::config::generate`).

#[cfg(not(target_arch = "wasm32"))]
fn main() -> Result<(), String> {
    use jwt_filter::config::generate::{REFERENCE_FILE, SCHEMA_FILE, reference, schema};
    use std::path::Path;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for (file, text) in [(SCHEMA_FILE, schema()?), (REFERENCE_FILE, reference()?)] {
        let path = root.join(file);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        println!("wrote {file}");
    }
    Ok(())
}

#[cfg(target_arch = "wasm32")]
fn main() {}
