//! The per-file evaluator that `scan` and the worker share: records → normalised
//! events → matching and alert building → the stateful step → alerts and counts.
//!
//! It comes in two halves, so that drivers can run the costly one in parallel:
//! - [`prepare`] is pure: it reads only the rules, so any number of threads run
//!   it at once, each on its own file. It works out everything a record's turn
//!   needs ([`Prepared`]): the rules whose condition holds, their observations for
//!   windowed state, and the alerts no window decides (built, or rendered for the
//!   output).
//! - [`FileTurn`] is the stateful step: one file's prepared records, in order,
//!   against [`crate::state::State`] (thresholds, suppression, the DeleteObjects
//!   join), and out through [`Emit`].
//!
//! `scan` runs [`prepare`] on reader threads and takes the turns of files strictly
//! in input order on one thread (its output is the same with any number of
//! threads); the worker runs both halves on each in-flight file's own thread, its
//! state shared under short locks ([`crate::state::Shared`]).

mod prepare;
mod turn;

pub use prepare::{Prepared, Renderer, TimeRange, prepare};
pub use turn::{Emit, FileCounts, FileTurn};
