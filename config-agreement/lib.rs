//! Nothing but its test: tests/check_config.rs.
