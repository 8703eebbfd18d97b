//! The request as the filter reads it: method, path, headers and form body (`request`); the
//! path's readings (`path`), the authority (`authority`), and how upstream stacks spell
//! names (`spelling`). Nothing here is trusted.

pub(crate) mod authority;
pub mod path;
pub mod request;
pub(crate) mod spelling;
