//! JWT verification filter. Placeholder: the core lands next.
