//! The id swap: every request goes upstream under an id the session's
//! [`Upstream`] issues, and its answer goes back to the miner under the
//! miner's own id, byte for byte.
//!
//! Invariant: only the pool's answer to the id a request was sent under can
//! reach the miner as that request's answer, so no id a miner chooses (reused,
//! repeated, shared with another request) can move a verdict.

use std::ops::Range;
use std::time::Instant;

use super::{INVALID_REQUEST, OTHER, Outbox, Session, SessionError, splice};
use crate::stratum::{self, Envelope};
use crate::upstream::{MinerId, Request, TrackError, Upstream};

/// The answer to a request whose id is too long to keep.
const ID_TOO_LONG: &str = "Invalid request: id longer than 64 bytes";

/// A proxy id as JSON: the value (`17`) or a whole member (`"id":17,`).
struct IdText(heapless::Vec<u8, 32>);

impl IdText {
    fn value(id: u64) -> IdText {
        let mut text = IdText(heapless::Vec::new());
        // Cannot fail: at most 20 digits.
        let _ = text.0.extend_from_slice(stratum::Decimal::unsigned(id).as_bytes());
        text
    }

    fn member(id: u64) -> IdText {
        let mut text = IdText(heapless::Vec::new());
        // Cannot fail: 6 bytes and at most 20 digits fit in 32.
        let _ = text.0.extend_from_slice(b"\"id\":");
        let _ = text.0.extend_from_slice(stratum::Decimal::unsigned(id).as_bytes());
        let _ = text.0.push(b',');
        text
    }

    fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl Session {
    /// Sends a miner's request upstream under a new proxy id, with `edits`
    /// (login, password) applied. Returns whether it went; when it did not,
    /// the miner has been answered.
    pub(super) fn send_upstream(
        &mut self,
        env: &Envelope<'_>,
        request: Request,
        edits: &[(Range<usize>, &[u8])],
        up: &mut Upstream,
        now: Instant,
        out: &mut Outbox,
    ) -> Result<bool, SessionError> {
        let proxy_id = match up.track(env.id().filter(|_| env.has_id()), request, now) {
            Ok(proxy_id) => proxy_id,
            Err(TrackError::IdTooLong) => {
                self.refuse(out, env.id(), INVALID_REQUEST, ID_TOO_LONG)?;
                return Ok(false);
            }
            Err(TrackError::Full) => {
                self.answer_locally(out, env.id(), OTHER, "Too many requests in flight")?;
                return Ok(false);
            }
        };
        let id_edit = match env.id_span() {
            Some(span) => (span, IdText::value(proxy_id)),
            None => (env.insert_at()..env.insert_at(), IdText::member(proxy_id)),
        };
        let mut all: heapless::Vec<(Range<usize>, &[u8]), 4> = heapless::Vec::new();
        for (range, with) in edits.iter().cloned().chain([(id_edit.0, id_edit.1.as_bytes())]) {
            // Cannot fail: callers pass at most two edits.
            let _ = all.push((range, with));
        }
        splice(&mut out.to_pool, env.line(), &mut all);
        Ok(true)
    }
}

/// Passes the pool's answer on to the miner under the miner's own id, with
/// `edit` applied; nothing when the miner sent its request without an id.
pub(super) fn answer_miner(
    out: &mut Outbox,
    env: &Envelope<'_>,
    miner_id: Option<&MinerId>,
    edit: Option<(Range<usize>, &[u8])>,
) {
    let (Some(miner_id), Some(id_span)) = (miner_id, env.id_span()) else {
        return;
    };
    let mut edits: heapless::Vec<(Range<usize>, &[u8]), 2> = heapless::Vec::new();
    // Cannot fail: two edits at most.
    let _ = edits.push((id_span, miner_id));
    if let Some(edit) = edit {
        let _ = edits.push(edit);
    }
    splice(&mut out.to_miner, env.line(), &mut edits);
}
