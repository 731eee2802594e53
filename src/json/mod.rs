//! Low-level JSON, shared by the layers above and depending on nothing else in the
//! crate (std, memchr and serde only).
//!
//! - `scan.rs`: byte-level scanning: quote and backslash search, word marks,
//!   string and value ends, nesting depth, compaction.
//! - `grammar.rs`: [`Syntax`], the verdict of the record splitter's grammar check,
//!   and the check's states.
//! - `members.rs`: an object's members and an array's elements, read from text
//!   already known to be valid (crate-internal).
//! - [`writer`]: JSON objects written member by member, as serde_json writes them.
//!
//! The first three are private; their items are re-exported here, so a user
//! imports `crate::json::…` whichever file holds the item.
//!
//! Users: the record splitter ([`crate::input::records`]) scans and checks records
//! as it reads them; the event model ([`crate::record`]) looks fields up in a
//! record's text; [`crate::alert`] and [`crate::output`] write with [`writer`].
//! Having these in a leaf keeps `record` from importing `input` (the layer above
//! it), and `output` → `alert` one-way.

mod grammar;
mod members;
mod scan;
pub mod writer;

pub use grammar::Syntax;
pub(crate) use grammar::{Next, Number};
pub(crate) use members::{KeyText, elements, member, member_at, members, members_at_separators};
pub(crate) use scan::zero_bytes;
pub use scan::{JsonStrings, compact, nesting_depth, quote_or_backslash, word_marks};
