//! What every operation gets and returns: the authenticated [`Caller`] (from the gateway) and
//! the response [`Fields`] (to the renderer). Shared by the dispatcher (`actions`) and the tag
//! operations (`tags`), so neither depends on the other for them.

use std::time::Instant;

use crate::response::Node;
use crate::state::Timing;

pub struct Caller<'a> {
    /// The `owner` values whose instances the caller sees (`State::owners_for_key` /
    /// `owners_for_account`).
    pub owners: &'a [String],
    pub now: Instant,
    pub timing: Timing,
}

pub type Fields = Vec<(&'static str, Node)>;
