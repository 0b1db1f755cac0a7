//! Worker names: how a miner's login becomes the name the pool sees.
//!
//! A login `alice.rig1` is split at its first `.` into user `alice` and worker
//! `rig1` (`default` when there is none). Each part keeps only `[A-Za-z0-9-]`
//! and at most [`MAX_PART_CHARS`] characters. Upstream the name is
//! `{account}{sep0}{user}{sep1}{worker}`. With no account configured the login
//! passes through unchanged, as solo pools want.
//!
//! Invariant: a rewritten name contains only the account (checked by config to
//! need no JSON escaping), the separators (likewise) and `[A-Za-z0-9-]`, so it
//! can be spliced into a JSON string without escaping.

use heapless::String;

/// Longest user or worker part kept from a login, in characters.
pub const MAX_PART_CHARS: usize = 32;
/// Capacity of an upstream name: account, two separators and two parts.
pub const MAX_UPSTREAM_NAME: usize = 256;
/// Longest login kept for logs and metrics labels, in bytes.
pub const MAX_LOGIN_BYTES: usize = 128;

/// The worker part used when a login has none.
pub const DEFAULT_WORKER: &str = "default";

/// The name that stands for every login without a name of its own, in the
/// metrics (past the series cap) and in the books (no accepted share yet, or
/// past the day's cap of new workers). A miner that logs in with this very
/// name is counted there too.
pub const OVERFLOW_WORKER: &str = "_other";

/// A login as the miner sent it, truncated for display.
pub type Login = String<MAX_LOGIN_BYTES>;

/// An upstream worker name.
pub type UpstreamName = String<MAX_UPSTREAM_NAME>;

/// Why a login cannot be rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameError {
    /// Nothing of the user part is left after filtering.
    EmptyUser,
    /// The upstream name would not fit.
    TooLong,
}

impl core::fmt::Display for NameError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            NameError::EmptyUser => f.write_str("login has no usable user name"),
            NameError::TooLong => f.write_str("upstream worker name too long"),
        }
    }
}

/// Rewrites logins to the pool account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewriter {
    account: std::string::String,
    separators: [std::string::String; 2],
}

impl Rewriter {
    /// The pool account logins are rewritten to; empty when they pass through.
    pub fn account(&self) -> &str {
        &self.account
    }

    /// A rewriter for `account` with `separators` (`[".", "_"]` by default).
    /// An empty account means logins pass through unchanged.
    pub fn new(account: &str, separators: [&str; 2]) -> Self {
        Rewriter { account: account.into(), separators: separators.map(Into::into) }
    }

    /// Whether logins pass through unchanged.
    pub fn passes_through(&self) -> bool {
        self.account.is_empty()
    }

    /// The upstream name for `login`, or `None` when logins pass through.
    pub fn upstream(&self, login: &str) -> Option<Result<UpstreamName, NameError>> {
        if self.passes_through() {
            return None;
        }
        Some(self.rewrite(login))
    }

    fn rewrite(&self, login: &str) -> Result<UpstreamName, NameError> {
        let (user, worker) = match login.split_once('.') {
            Some((user, worker)) => (user, worker),
            None => (login, ""),
        };
        let mut out = UpstreamName::new();
        let push = |out: &mut UpstreamName, s: &str| out.push_str(s).map_err(|_| NameError::TooLong);
        push(&mut out, &self.account)?;
        push(&mut out, &self.separators[0])?;
        if push_part(&mut out, user)? == 0 {
            return Err(NameError::EmptyUser);
        }
        push(&mut out, &self.separators[1])?;
        if push_part(&mut out, worker)? == 0 {
            push(&mut out, DEFAULT_WORKER)?;
        }
        Ok(out)
    }
}

/// Appends the allowed characters of `part`, at most [`MAX_PART_CHARS`];
/// returns how many were kept.
fn push_part(out: &mut UpstreamName, part: &str) -> Result<usize, NameError> {
    let mut kept = 0;
    for c in part.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-') {
        if kept == MAX_PART_CHARS {
            break;
        }
        out.push(c).map_err(|_| NameError::TooLong)?;
        kept += 1;
    }
    Ok(kept)
}

/// True only if `login` is its own [`display_login`]: printable ASCII that
/// fits (every real login), so it can be used as it is. (Some other logins
/// are their own display form too, such as non-ASCII letters; this test
/// does not look for those.)
fn is_display(login: &str) -> bool {
    login.len() <= MAX_LOGIN_BYTES && login.bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// A login in display form, borrowed when it already is one.
pub enum Shown<'a> {
    /// The login itself: printable ASCII that fits (every real login).
    Same(&'a str),
    /// A filtered copy, on the stack.
    Filtered(Login),
}

impl core::ops::Deref for Shown<'_> {
    type Target = str;

    fn deref(&self) -> &str {
        match self {
            Shown::Same(login) => login,
            Shown::Filtered(login) => login.as_str(),
        }
    }
}

/// `login`'s [`display_login`] without copying a login that is already
/// its own display form: for lookups on every share.
pub fn shown(login: &str) -> Shown<'_> {
    if is_display(login) { Shown::Same(login) } else { Shown::Filtered(display_login(login)) }
}

/// `login` without control characters (no forged log lines, no terminal
/// escapes in tables), truncated at a character boundary to fit a [`Login`].
pub fn display_login(login: &str) -> Login {
    // Printable ASCII that fits: copied whole, as the loop below would,
    // without a push per character.
    if is_display(login)
        && let Ok(whole) = Login::try_from(login)
    {
        return whole;
    }
    let mut out = Login::new();
    for c in login.chars().filter(|c| !c.is_control()) {
        if out.push(c).is_err() {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(login: &str, expect: Result<&str, NameError>) {
        let r = Rewriter::new("bc1qacct", [".", "_"]);
        let got = r.upstream(login).unwrap();
        assert_eq!(got.as_ref().map(|s| s.as_str()), expect.as_ref().map(|s| *s), "{login}");
    }

    #[test]
    fn rewrites() {
        check("alice.rig1", Ok("bc1qacct.alice_rig1"));
        check("bob", Ok("bc1qacct.bob_default"));
        check("bob.", Ok("bc1qacct.bob_default"));
        check("a.b.c", Ok("bc1qacct.a_bc"));
        check("al ice!.r_i-g", Ok("bc1qacct.alice_ri-g"));
        check("ünï.x", Ok("bc1qacct.n_x"));
        check("", Err(NameError::EmptyUser));
        check("!!!.rig", Err(NameError::EmptyUser));
        let long = "u".repeat(100) + "." + &"w".repeat(100);
        let want = format!("bc1qacct.{}_{}", "u".repeat(32), "w".repeat(32));
        check(&long, Ok(&want));
    }

    #[test]
    fn passes_through_without_account() {
        let r = Rewriter::new("", [".", "_"]);
        assert!(r.upstream("bc1qminer.rig").is_none());
    }

    #[test]
    fn other_separators() {
        let r = Rewriter::new("acct", ["+", "."]);
        assert_eq!(r.upstream("a.b").unwrap().unwrap().as_str(), "acct+a.b");
    }

    #[test]
    fn display_drops_control_characters() {
        assert_eq!(display_login("a\nINFO forged\u{1b}[2J").as_str(), "aINFO forged[2J");
    }

    #[test]
    fn display_truncates_on_char_boundary() {
        let s = "é".repeat(100);
        let d = display_login(&s);
        assert!(d.len() <= MAX_LOGIN_BYTES);
        assert!(d.chars().all(|c| c == 'é'));
    }
}
