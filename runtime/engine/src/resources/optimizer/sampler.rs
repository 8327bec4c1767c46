//! Samplers: how the next candidate is drawn. Each draws one point of the [`Space`] for a
//! trial from the trials finished before it, with an RNG of that trial alone
//! ([`trial_rng`]), so the same seed gives the same candidates whatever the timing.
//!
//! - [`RandomSampler`]: uniform in each dimension's internal coordinate (so log-uniform for
//!   log-scale variables).
//! - [`GridSampler`]: the Cartesian product of each dimension's grid, in order.
//! - [`TpeSampler`]: random for the first `startup` complete trials, then Optuna-style
//!   multivariate TPE ([`tpe`]), minimising the loss.

use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};

use super::space::Space;

/// The RNG of one trial.
pub type TrialRng = ChaCha8Rng;

/// The RNG of trial `number` of an optimizer seeded with `seed`: ChaCha8 keyed by both,
/// independent of every other trial's.
pub fn trial_rng(seed: u64, number: u64) -> TrialRng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&number.to_le_bytes());
    key[16..].copy_from_slice(b"mlbridge/trials/");
    ChaCha8Rng::from_seed(key)
}

/// A finished, complete trial as samplers see it.
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    /// The trial's coordinates, one per dimension.
    pub coordinates: &'a [f64],
    /// What is minimised: the score, negated when maximising.
    pub loss: f64,
}

/// Draws candidates.
pub trait Sampler: Send + Sync + std::fmt::Debug {
    /// Raw coordinates (one per dimension, to be snapped by [`Space::candidate`]) for trial
    /// `number`, from the complete trials `history` finished before its batch; `None` when
    /// the sampler has nothing left to propose (a grid that is done).
    fn sample(
        &self,
        space: &Space,
        number: u64,
        history: &[Observation<'_>],
        rng: &mut TrialRng,
    ) -> Option<Vec<f64>>;

    /// How many candidates the sampler can propose at most; `None` when unbounded.
    fn capacity(&self, _space: &Space) -> Option<u64> {
        None
    }
}

/// Uniform random search.
#[derive(Debug, Clone, Copy, Default)]
pub struct RandomSampler;

impl RandomSampler {
    fn draw(space: &Space, rng: &mut TrialRng) -> Vec<f64> {
        space
            .dimensions
            .iter()
            .map(|d| {
                let (start, end) = d.interval();
                rng.random_range(start..end)
            })
            .collect()
    }
}

impl Sampler for RandomSampler {
    fn sample(
        &self,
        space: &Space,
        _number: u64,
        _history: &[Observation<'_>],
        rng: &mut TrialRng,
    ) -> Option<Vec<f64>> {
        Some(RandomSampler::draw(space, rng))
    }
}

/// Grid search: trial `n` is the `n`-th point of the product of the dimensions' grids, the
/// last dimension varying fastest.
#[derive(Debug, Clone)]
pub struct GridSampler {
    /// Points per continuous dimension.
    pub points: usize,
}

impl Sampler for GridSampler {
    fn sample(
        &self,
        space: &Space,
        number: u64,
        _history: &[Observation<'_>],
        _rng: &mut TrialRng,
    ) -> Option<Vec<f64>> {
        if number >= space.grid_size(self.points) {
            return None;
        }
        let grids: Vec<Vec<f64>> = space
            .dimensions
            .iter()
            .map(|d| d.grid(self.points))
            .collect();
        let mut rest = number;
        let mut xs = vec![0.0; grids.len()];
        for (i, grid) in grids.iter().enumerate().rev() {
            let len = grid.len() as u64;
            xs[i] = grid[(rest % len) as usize];
            rest /= len;
        }
        Some(xs)
    }

    fn capacity(&self, space: &Space) -> Option<u64> {
        Some(space.grid_size(self.points))
    }
}

pub mod tpe;

pub use tpe::TpeSampler;

#[cfg(test)]
mod tests;
