//! Engine-native optimizers over session variables: `tpe`, `random` and `grid`.

pub mod sampler;
pub mod space;
pub mod trials;
