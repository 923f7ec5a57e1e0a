//! The runner both fuzzers share: `tmc debug fuzz-raft`
//! ([`crate::raft::fuzz`]) and `tmc debug fuzz-api` ([`crate::api::fuzz`]).
//!
//! A fuzzer is a function of a seeded generator and the input's number
//! that draws one input, feeds it to the code under test and checks its
//! invariants. [`run`] calls it for inputs 0, 1, 2, ... until a number of
//! inputs ran or a time passed, whichever comes first. The first input
//! that breaks an invariant (returns an error) or panics ends the run; a
//! panic is caught and described by the fuzzer from the generator as it
//! was before that input (so the fuzzer can draw the input again and print
//! it) and the panic's message. One generator serves the whole run, so a
//! seed replays a run exactly.
//!
//! Left out: shrinking a failing input, parallel runs, a corpus on disk.

use rand::rngs::StdRng;
use rand::SeedableRng;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

/// An input that panicked.
pub struct Panicked {
    /// The input's number (from 0).
    pub iteration: u64,
    /// The generator as it was before the input was drawn: drawing from it
    /// again gives the same input.
    pub rng: StdRng,
    /// What the panic said.
    pub message: String,
}

/// Runs `input(rng, n)` for n = 0, 1, ... with one generator seeded with
/// `seed`, until `iterations` inputs ran or `seconds` passed, whichever
/// comes first; returns how many ran. The first input that returns an
/// error ends the run with that error, the first that panics with what
/// `panicked` makes of it.
pub fn run(
    seed: u64,
    seconds: u64,
    iterations: u64,
    mut input: impl FnMut(&mut StdRng, u64) -> Result<(), String>,
    panicked: impl FnOnce(Panicked) -> String,
) -> Result<u64, String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut n = 0;
    while n < iterations && Instant::now() < until {
        let before = rng.clone();
        match catch_unwind(AssertUnwindSafe(|| input(&mut rng, n))) {
            Ok(Ok(())) => n += 1,
            Ok(Err(e)) => return Err(e),
            Err(p) => {
                return Err(panicked(Panicked {
                    iteration: n,
                    rng: before,
                    message: panic_message(p),
                }))
            }
        }
    }
    Ok(n)
}

/// The message of a caught panic (`panic!`'s text), or "a panic".
pub fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "a panic".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn runs_until_the_count_and_stops_at_the_first_failure() {
        assert_eq!(run(1, 60, 100, |_, _| Ok(()), |_| unreachable!()), Ok(100));
        let err = run(
            1,
            60,
            100,
            |_, n| {
                if n == 7 {
                    Err(format!("broke at {n}"))
                } else {
                    Ok(())
                }
            },
            |_| unreachable!(),
        );
        assert_eq!(err, Err("broke at 7".to_string()));
    }

    #[test]
    fn a_panic_is_reported_with_the_generator_that_drew_its_input() {
        let mut drawn = Vec::new();
        let err = run(
            5,
            60,
            100,
            |rng, n| {
                let x: u64 = rng.random();
                drawn.push(x);
                assert!(n < 3, "input {x}");
                Ok(())
            },
            |p| {
                let mut replay = p.rng;
                let again: u64 = replay.random();
                format!("{} {again} {}", p.iteration, p.message)
            },
        )
        .unwrap_err();
        assert_eq!(err, format!("3 {} input {}", drawn[3], drawn[3]));
    }
}
