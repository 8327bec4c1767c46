//! Engine-native resources (placeholder until the resource core lands on main).

pub mod optimizer;
