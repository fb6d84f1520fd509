//! The standard library: the `.loss` files under `losses/`, compiled in, by name.

/// Every standard-library loss: (name, source text).
pub const LOSSES: &[(&str, &str)] = &[];

/// The source of the standard-library loss `name` (e.g. `torch/mse_loss`).
pub fn source(name: &str) -> Option<&'static str> {
    LOSSES.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

/// Every name, sorted.
pub fn names() -> impl Iterator<Item = &'static str> {
    LOSSES.iter().map(|(n, _)| *n)
}
