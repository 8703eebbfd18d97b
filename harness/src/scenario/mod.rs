//! Scenarios: the file format, loading, expectations and the runner.

pub mod bytes;
pub mod envoy;
pub mod expect;
pub mod load;
pub mod model;
pub mod property;
pub mod run;
