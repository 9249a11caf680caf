//! Watches of the local xenstore server: registration records and matching
//! (xenstored's `watch.c`).

use super::tree::Match;

/// One registered watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Watch {
    /// Canonical (absolute or `@special`) path.
    pub path: String,
    /// The caller's token.
    pub token: String,
    /// Bytes to strip from event paths (the domain home prefix) for a watch registered
    /// with a relative path; 0 otherwise.
    pub prefix_len: usize,
    /// Directory levels below `path` that match (`None`: all).
    pub depth: Option<u32>,
}

/// Whether `child` equals `parent` or lies below it, at most `depth` levels down
/// (xenstored's `is_child`).
pub(crate) fn is_child(child: &str, parent: &str, depth: Option<u32>) -> bool {
    if child == parent {
        return true;
    }
    let rest = if parent == "/" {
        match child.strip_prefix('/') {
            Some(r) => r,
            None => return false,
        }
    } else {
        match child.strip_prefix(parent).and_then(|r| r.strip_prefix('/')) {
            Some(r) => r,
            None => return false,
        }
    };
    match depth {
        None => true,
        Some(d) => (rest.matches('/').count() as u64) < u64::from(d),
    }
}

impl Watch {
    /// Whether a change of `path` (matched as `m`) fires this watch.
    pub fn fires_for(&self, path: &str, m: Match) -> bool {
        match m {
            Match::Exact => path == self.path,
            Match::Subtree => is_child(path, &self.path, self.depth),
        }
    }

    /// The path reported in the event (relative if the watch was relative).
    pub fn event_path<'a>(&self, path: &'a str) -> &'a str {
        path.get(self.prefix_len..).unwrap_or(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_matching() {
        assert!(is_child("/a/b", "/a", None));
        assert!(is_child("/a", "/a", None));
        assert!(!is_child("/ab", "/a", None));
        assert!(is_child("/x", "/", None));
        assert!(is_child("/a/b", "/a", Some(1)));
        assert!(!is_child("/a/b/c", "/a", Some(1)));
        assert!(!is_child("/a/b", "/a", Some(0)));
        assert!(is_child("/a", "/a", Some(0)));
        assert!(!is_child("@releaseDomain", "/", None));
        assert!(is_child("@releaseDomain", "@releaseDomain", None));
    }
}
