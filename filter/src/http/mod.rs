//! The request as the filter reads it: method, path, headers and form body (`request`); the
//! path's readings (`path`), the authority (`authority`), and how upstream stacks spell
//! names (`spelling`). Nothing here is trusted. `fold_table` is generated (`generate`, native
//! only: `make unicode`).

pub(crate) mod authority;
mod fold_table;
#[cfg(not(target_arch = "wasm32"))]
pub mod generate;
pub mod path;
pub mod request;
pub(crate) mod spelling;
