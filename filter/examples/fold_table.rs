//! `make unicode`: writes `filter/src/http/fold_table.rs`, the table of `path::fold` generated
//! from the standard library's case conversions (`jwt_filter::http::generate`).

#[cfg(not(target_arch = "wasm32"))]
fn main() -> Result<(), String> {
    use jwt_filter::http::generate::{FOLD_TABLE_FILE, fold_table};
    use jwt_filter::http::path::FOLD_UNICODE_VERSION;
    use std::path::Path;
    if char::UNICODE_VERSION < FOLD_UNICODE_VERSION {
        return Err(format!(
            "not written: this toolchain's Unicode version, {:?}, is older than the table's, {:?}",
            char::UNICODE_VERSION,
            FOLD_UNICODE_VERSION
        ));
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(FOLD_TABLE_FILE);
    std::fs::write(&path, fold_table()).map_err(|e| format!("{}: {e}", path.display()))?;
    println!("wrote {FOLD_TABLE_FILE}");
    Ok(())
}

#[cfg(target_arch = "wasm32")]
fn main() {}
