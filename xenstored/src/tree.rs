//! The node tree of the local xenstore server, with xenstored's permission rules.
//!
//! Paths handed to [`Tree`] are canonical (absolute, validated). Every operation takes
//! the [`Caller`] and applies the rules of `tools/xenstored/core.c`:
//!
//! * dom0 (privileged) may do anything;
//! * the owner (first permission entry) has full access;
//! * otherwise the first further entry naming the caller decides, else the first
//!   entry's access (the default for everyone else);
//! * a missing node is reported as `ENOENT` only if the caller could see it, that is if
//!   the nearest existing ancestor grants the access asked for, else `EACCES`;
//! * creating a node needs write access to its nearest existing ancestor; new nodes
//!   (including implicitly created parents) inherit the parent's permissions, and an
//!   unprivileged creator becomes their owner.
//!
//! A transaction is a [`Tree`] overlay with a [`Journal`], seen through a [`View`] over
//! the main tree: every node looked at or changed is recorded with its generation (for
//! conflict detection at commit) and frozen in the overlay at first access.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use xen_ids::DomId;
use xenstore::perms::{XsAccess, XsPerm};
use xenstore::wire::XsdError;

/// Who is asking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Caller {
    pub domid: DomId,
}

impl Caller {
    pub fn privileged(self) -> bool {
        self.domid == DomId::DOM0
    }
}

/// One node.
#[derive(Clone, Debug)]
pub(crate) struct Node {
    pub value: Vec<u8>,
    pub perms: Vec<XsPerm>,
    pub children: BTreeSet<String>,
    /// Changes whenever the node's value, permissions or children change.
    pub gen: u64,
}

/// What a caller may do with a node.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Rights {
    pub read: bool,
    pub write: bool,
    pub owner: bool,
}

/// The rights `caller` has on a node with `perms` (xenstored's `perm_for_conn`).
pub(crate) fn rights(caller: Caller, perms: &[XsPerm]) -> Rights {
    let all = Rights {
        read: true,
        write: true,
        owner: true,
    };
    let Some(first) = perms.first() else {
        return if caller.privileged() {
            all
        } else {
            Rights::default()
        };
    };
    if caller.privileged() || first.domid == caller.domid {
        return all;
    }
    let access = perms[1..]
        .iter()
        .find(|p| p.domid == caller.domid)
        .map_or(first.access, |p| p.access);
    Rights {
        read: access.can_read(),
        write: access.can_write(),
        owner: false,
    }
}

/// The access an operation needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Need {
    Read,
    Write,
    /// Write and ownership (`SET_PERMS`).
    Owner,
}

impl Need {
    fn granted(self, r: Rights) -> bool {
        match self {
            Need::Read => r.read,
            Need::Write => r.write,
            Need::Owner => r.write && r.owner,
        }
    }

    /// Whether `r` has any of the rights (xenstored tests `parent_perm & perm`).
    fn any_granted(self, r: Rights) -> bool {
        match self {
            Need::Read => r.read,
            Need::Write => r.write,
            Need::Owner => r.write || r.owner,
        }
    }
}

/// How a change matches watches (xenstored's `MATCH_SUBTREE` / `MATCH_EXACT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Match {
    /// Watches on the path or any ancestor fire.
    Subtree,
    /// Only watches on exactly the path fire (descendants of a removed subtree).
    Exact,
}

/// A change that may fire watches. A watcher is told only if it may read the node
/// under one of `perms` (its permissions before and after the change, and its
/// parent's), as xenstored's `watch_permitted` does.
#[derive(Clone, Debug)]
pub(crate) struct Change {
    pub path: String,
    pub matching: Match,
    pub perms: Vec<Vec<XsPerm>>,
}

/// Limits applied to unprivileged callers.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NodeLimits {
    /// Nodes a domain may own (`nodes`).
    pub nodes: u32,
    /// Largest value (`node-size`).
    pub node_size: usize,
    /// Most permission entries on a node (`node-permissions`).
    pub perms: usize,
}

/// Record of what a transaction touched: generation at first access (`None`: absent)
/// and the set of paths it changed.
#[derive(Clone, Debug, Default)]
pub(crate) struct Journal {
    pub accessed: HashMap<String, Option<u64>>,
    pub written: BTreeSet<String>,
    /// Permissions of the nodes that existed when first accessed.
    pub first_perms: HashMap<String, Vec<XsPerm>>,
    /// Paths in order of first access (the order xenstored commits and fires in).
    pub order: Vec<String>,
}

/// A layer of nodes. The main tree holds every node; a transaction's overlay holds the
/// nodes the transaction accessed, as they were at first access or as it changed them
/// (`None`: absent or removed), and reads through to the main tree for the rest, as
/// xenstored does (no copy of the database).
#[derive(Clone, Debug, Default)]
pub(crate) struct Tree {
    nodes: HashMap<String, Option<Node>>,
    /// Nodes owned per domain: absolute in the main tree, a difference in an overlay.
    owned: HashMap<DomId, i64>,
    next_gen: u64,
    /// What a transaction touched (overlays only).
    pub journal: Option<Journal>,
}

/// A tree as one operation sees it: a layer, over the main tree for an overlay.
pub(crate) struct View<'a> {
    top: &'a mut Tree,
    base: Option<&'a Tree>,
}

pub(crate) fn parent_of(path: &str) -> Option<&str> {
    if path == "/" {
        return None;
    }
    match path.rfind('/') {
        Some(0) => Some("/"),
        Some(i) => Some(&path[..i]),
        None => None,
    }
}

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

pub(crate) fn child_path(parent: &str, name: &str) -> String {
    if parent == "/" {
        format!("/{name}")
    } else {
        format!("{parent}/{name}")
    }
}

impl Tree {
    /// A tree with the root `/`, `/local`, `/local/domain` and dom0's home
    /// `/local/domain/0`, all owned by dom0 with no access for anyone else, as on a Xen
    /// host after boot (guests reach only their own home and what they are granted).
    pub fn new() -> Self {
        let mut t = Tree {
            next_gen: 1,
            ..Tree::default()
        };
        let mut v = t.view();
        v.put(
            "/",
            Some(Node {
                value: Vec::new(),
                perms: vec![XsPerm::new(DomId::DOM0, XsAccess::None)],
                children: BTreeSet::new(),
                gen: 0,
            }),
        );
        let dom0 = Caller { domid: DomId::DOM0 };
        let unlimited = NodeLimits {
            nodes: u32::MAX,
            node_size: usize::MAX,
            perms: usize::MAX,
        };
        // Cannot fail: dom0, fresh tree, valid path; the nodes inherit the root's
        // permissions (owner dom0, no access for others).
        let _ = v.create_or_write(dom0, "/local/domain/0", None, unlimited);
        t
    }

    /// An empty transaction overlay (with a journal).
    pub fn overlay() -> Self {
        Tree {
            journal: Some(Journal::default()),
            ..Tree::default()
        }
    }

    /// The main tree as a view.
    pub fn view(&mut self) -> View<'_> {
        View {
            top: self,
            base: None,
        }
    }

    /// This overlay over `base` (the main tree).
    pub fn over<'a>(&'a mut self, base: &'a Tree) -> View<'a> {
        View {
            top: self,
            base: Some(base),
        }
    }

    /// The node at `path` in this layer, without any check (main tree bookkeeping).
    pub fn raw(&self, path: &str) -> Option<&Node> {
        self.nodes.get(path).and_then(Option::as_ref)
    }

    /// This overlay's entry for `path`: `None` if untouched, `Some(None)` if removed.
    pub fn layer_entry(&self, path: &str) -> Option<Option<&Node>> {
        self.nodes.get(path).map(Option::as_ref)
    }

    /// Every path whose node is owned by `domid` (main tree).
    pub fn paths_owned_by(&self, domid: DomId) -> Vec<String> {
        let mut v: Vec<String> = self
            .nodes
            .iter()
            .filter(|(_, n)| {
                n.as_ref()
                    .and_then(|n| n.perms.first())
                    .is_some_and(|p| p.domid == domid)
            })
            .map(|(p, _)| p.clone())
            .collect();
        v.sort();
        v
    }

    /// Number of nodes (main tree).
    pub fn len(&self) -> usize {
        self.nodes.values().filter(|n| n.is_some()).count()
    }

    /// A sorted dump `path → value` (main tree; for tests and debugging).
    pub fn dump(&self) -> BTreeMap<String, Vec<u8>> {
        self.nodes
            .iter()
            .filter_map(|(p, n)| n.as_ref().map(|n| (p.clone(), n.value.clone())))
            .collect()
    }
}

impl View<'_> {
    /// The node at `path`: this layer's version, else the main tree's.
    fn node(&self, path: &str) -> Option<&Node> {
        match self.top.nodes.get(path) {
            Some(n) => n.as_ref(),
            None => self.base.and_then(|b| b.raw(path)),
        }
    }

    /// The node at `path` for modification (copied into an overlay first).
    fn node_mut(&mut self, path: &str) -> Option<&mut Node> {
        if !self.top.nodes.contains_key(path) {
            let n = self.base.and_then(|b| b.raw(path)).cloned()?;
            self.top.nodes.insert(path.to_owned(), Some(n));
        }
        self.top.nodes.get_mut(path).and_then(Option::as_mut)
    }

    fn bump(&mut self) -> u64 {
        self.top.next_gen += 1;
        self.top.next_gen
    }

    /// Records the first access of `path` in a transaction: its generation, for the
    /// conflict check, and its state, which the transaction keeps seeing from then on
    /// (xenstored copies a node into the transaction when first accessed).
    fn note_read(&mut self, path: &str) {
        let first = self
            .top
            .journal
            .as_ref()
            .is_some_and(|j| !j.accessed.contains_key(path));
        if !first {
            return;
        }
        let cur = self.node(path).cloned();
        if let Some(j) = self.top.journal.as_mut() {
            j.accessed
                .insert(path.to_owned(), cur.as_ref().map(|n| n.gen));
            j.order.push(path.to_owned());
            if let Some(n) = &cur {
                j.first_perms.insert(path.to_owned(), n.perms.clone());
            }
        }
        if self.base.is_some() && !self.top.nodes.contains_key(path) {
            self.top.nodes.insert(path.to_owned(), cur);
        }
    }

    fn note_write(&mut self, path: &str) {
        self.note_read(path);
        if let Some(j) = self.top.journal.as_mut() {
            j.written.insert(path.to_owned());
        }
    }

    /// Sets (or removes, with `None`) a node verbatim, keeping ownership counts. Used
    /// for construction and for applying a committed transaction.
    pub fn put(&mut self, path: &str, node: Option<Node>) {
        if let Some(o) = self
            .node(path)
            .and_then(|n| n.perms.first())
            .map(|p| p.domid)
        {
            *self.top.owned.entry(o).or_default() -= 1;
        }
        let node = node.map(|mut n| {
            n.gen = self.bump();
            n
        });
        if let Some(o) = node.as_ref().and_then(|n| n.perms.first()).map(|p| p.domid) {
            *self.top.owned.entry(o).or_default() += 1;
        }
        match (node, self.base.is_some()) {
            (Some(n), _) => {
                self.top.nodes.insert(path.to_owned(), Some(n));
            }
            // An overlay remembers the removal; the main tree forgets the node.
            (None, true) => {
                self.top.nodes.insert(path.to_owned(), None);
            }
            (None, false) => {
                self.top.nodes.remove(path);
            }
        }
    }

    /// How many nodes `domid` owns, as this view sees it.
    pub fn owned_by(&self, domid: DomId) -> u32 {
        let base = self
            .base
            .map_or(0, |b| b.owned.get(&domid).copied().unwrap_or(0));
        let top = self.top.owned.get(&domid).copied().unwrap_or(0);
        u32::try_from((base + top).max(0)).unwrap_or(u32::MAX)
    }

    /// The nearest existing strict ancestor of `path`.
    fn nearest_ancestor(&mut self, path: &str) -> Option<String> {
        let mut p = parent_of(path);
        while let Some(cur) = p {
            self.note_read(cur);
            if self.node(cur).is_some() {
                return Some(cur.to_owned());
            }
            p = parent_of(cur);
        }
        None
    }

    /// The error for a missing node (xenstored's `errno_from_parents`): `ENOENT` if the
    /// nearest existing ancestor grants *any* of the rights asked for, else `EACCES`.
    fn missing(&mut self, caller: Caller, path: &str, need: Need) -> XsdError {
        let Some(a) = self.nearest_ancestor(path) else {
            return XsdError::ENOENT;
        };
        match self.node(&a) {
            Some(n) if need.any_granted(rights(caller, &n.perms)) => XsdError::ENOENT,
            _ => XsdError::EACCES,
        }
    }

    /// Looks a node up and checks `need`.
    pub fn get(&mut self, caller: Caller, path: &str, need: Need) -> Result<&Node, XsdError> {
        self.note_read(path);
        let granted = self
            .node(path)
            .map(|n| need.granted(rights(caller, &n.perms)));
        match granted {
            Some(true) => self.node(path).ok_or(XsdError::EIO),
            Some(false) => Err(XsdError::EACCES),
            None => Err(self.missing(caller, path, need)),
        }
    }

    /// `DIRECTORY_PART` generation count of a node (after [`View::get`]).
    pub fn gen_of(&self, path: &str) -> u64 {
        self.node(path).map_or(0, |n| n.gen)
    }

    /// `WRITE` (`value: Some`) or `MKDIR` (`value: None`). Returns the change to fire,
    /// `None` for a `MKDIR` of an existing node.
    pub fn create_or_write(
        &mut self,
        caller: Caller,
        path: &str,
        value: Option<&[u8]>,
        limits: NodeLimits,
    ) -> Result<Option<Change>, XsdError> {
        if !caller.privileged() && value.is_some_and(|v| v.len() > limits.node_size) {
            return Err(XsdError::ENOSPC);
        }
        self.note_read(path);
        if let Some(n) = self.node(path) {
            if !Need::Write.granted(rights(caller, &n.perms)) {
                return Err(XsdError::EACCES);
            }
            let Some(v) = value else {
                return Ok(None);
            };
            self.note_write(path);
            let gen = self.bump();
            if let Some(n) = self.node_mut(path) {
                n.value = v.to_vec();
                n.gen = gen;
            }
            return Ok(Some(self.change(path, Match::Subtree, None)));
        }
        // Create: the nearest existing ancestor must grant write.
        let Some(anc) = self.nearest_ancestor(path) else {
            return Err(XsdError::ENOENT);
        };
        let Some(anc_perms) = self.node(&anc).map(|n| n.perms.clone()) else {
            return Err(XsdError::EIO);
        };
        if !Need::Write.granted(rights(caller, &anc_perms)) {
            return Err(XsdError::EACCES);
        }
        let mut missing = Vec::new();
        let mut p = path;
        while p != anc {
            missing.push(p.to_owned());
            p = parent_of(p).unwrap_or("/");
        }
        missing.reverse();
        let mut perms = anc_perms;
        if !caller.privileged() {
            if let Some(first) = perms.first_mut() {
                first.domid = caller.domid;
            }
            let owner = perms.first().map_or(caller.domid, |p| p.domid);
            if self.owned_by(owner).saturating_add(missing.len() as u32) > limits.nodes {
                return Err(XsdError::ENOSPC);
            }
        }
        let mut parent = anc;
        for (i, p) in missing.iter().enumerate() {
            self.note_write(&parent);
            let gen = self.bump();
            if let Some(par) = self.node_mut(&parent) {
                par.children.insert(basename(p).to_owned());
                par.gen = gen;
            }
            self.note_write(p);
            let is_target = i + 1 == missing.len();
            let node = Node {
                value: if is_target {
                    value.unwrap_or_default().to_vec()
                } else {
                    Vec::new()
                },
                perms: perms.clone(),
                children: BTreeSet::new(),
                gen: 0,
            };
            self.put(p, Some(node));
            parent = p.clone();
        }
        Ok(Some(self.change(path, Match::Subtree, None)))
    }

    /// `RM`. Returns the changes to fire (the root of the removed subtree matches
    /// watches on it and its ancestors, each removed descendant matches exact watches).
    pub fn rm(&mut self, caller: Caller, path: &str) -> Result<Vec<Change>, XsdError> {
        self.note_read(path);
        match self.node(path) {
            Some(n) if Need::Write.granted(rights(caller, &n.perms)) => {}
            Some(_) => return Err(XsdError::EACCES),
            None => {
                let e = self.missing(caller, path, Need::Write);
                if e != XsdError::ENOENT {
                    return Err(e);
                }
                // Not there: fine if the parent exists.
                let parent = parent_of(path).unwrap_or("/");
                return if self.node(parent).is_some() {
                    Ok(Vec::new())
                } else {
                    Err(XsdError::ENOENT)
                };
            }
        }
        if path == "/" {
            return Err(XsdError::EINVAL);
        }
        let parent = parent_of(path).unwrap_or("/").to_owned();
        self.note_read(&parent);
        // Only a transaction can see a node without its parent (both frozen at first
        // access, at different times); xenstored's rm_node answers EINVAL then.
        let Some(par) = self.node(&parent) else {
            return Err(XsdError::EINVAL);
        };
        // Likewise a frozen parent may not list the node: xenstored removes the
        // subtree, then its delete_child reports corruption and answers EIO.
        let listed = par.children.contains(basename(path));
        let parent_perms = Some(par.perms.clone());
        // Collect the subtree, deepest first. In a transaction a listed child may be
        // missing (parent and child frozen at different times): xenstored's tree walk
        // fails with EIO then, and so does this.
        let mut order = Vec::new();
        let mut stack = vec![path.to_owned()];
        while let Some(p) = stack.pop() {
            self.note_read(&p);
            let Some(n) = self.node(&p) else {
                return Err(XsdError::EIO);
            };
            for c in &n.children {
                stack.push(child_path(&p, c));
            }
            order.push(p);
        }
        let mut changes = Vec::with_capacity(order.len());
        for p in order.iter().rev() {
            let Some(n) = self.node(p) else { continue };
            let mut perms = vec![n.perms.clone()];
            if let Some(pp) = &parent_perms {
                perms.push(pp.clone());
            }
            changes.push(Change {
                path: p.clone(),
                matching: if p == path {
                    Match::Subtree
                } else {
                    Match::Exact
                },
                perms,
            });
            self.note_write(p);
            self.put(p, None);
        }
        if !listed {
            return Err(XsdError::EIO);
        }
        self.note_write(&parent);
        let gen = self.bump();
        if let Some(par) = self.node_mut(&parent) {
            par.children.remove(basename(path));
            par.gen = gen;
        }
        Ok(changes)
    }

    /// `SET_PERMS`.
    pub fn set_perms(
        &mut self,
        caller: Caller,
        path: &str,
        perms: &[XsPerm],
        limits: NodeLimits,
    ) -> Result<Change, XsdError> {
        if perms.is_empty() {
            return Err(XsdError::EINVAL);
        }
        if !caller.privileged() && perms.len() > limits.perms {
            return Err(XsdError::ENOSPC);
        }
        let old = self.get(caller, path, Need::Owner)?.perms.clone();
        if !caller.privileged() && old.first().map(|p| p.domid) != Some(perms[0].domid) {
            return Err(XsdError::EPERM);
        }
        self.note_write(path);
        let Some(mut node) = self.node(path).cloned() else {
            return Err(XsdError::EIO);
        };
        node.perms = perms.to_vec();
        self.put(path, Some(node));
        Ok(self.change(path, Match::Subtree, Some(old)))
    }

    fn change(&self, path: &str, matching: Match, old_perms: Option<Vec<XsPerm>>) -> Change {
        let mut perms = Vec::with_capacity(3);
        if let Some(o) = old_perms {
            perms.push(o);
        }
        if let Some(n) = self.node(path) {
            perms.push(n.perms.clone());
        }
        if let Some(p) = parent_of(path).and_then(|p| self.node(p)) {
            perms.push(p.perms.clone());
        }
        Change {
            path: path.to_owned(),
            matching,
            perms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIM: NodeLimits = NodeLimits {
        nodes: 1000,
        node_size: 2048,
        perms: 5,
    };

    fn dom(d: DomId) -> Caller {
        Caller { domid: d }
    }

    #[test]
    fn implicit_parents_inherit_and_unprivileged_creator_owns() {
        let mut t = Tree::new();
        t.view()
            .create_or_write(dom(xen_ids::DomId(0)), "/local/domain/3", None, LIM)
            .unwrap();
        t.view()
            .set_perms(
                dom(xen_ids::DomId(0)),
                "/local/domain/3",
                &[XsPerm::new(xen_ids::DomId(3), XsAccess::None)],
                LIM,
            )
            .unwrap();
        t.view()
            .create_or_write(
                dom(xen_ids::DomId(3)),
                "/local/domain/3/a/b/c",
                Some(b"v"),
                LIM,
            )
            .unwrap();
        assert_eq!(
            t.view()
                .get(dom(xen_ids::DomId(3)), "/local/domain/3/a/b/c", Need::Read)
                .unwrap()
                .value,
            b"v"
        );
        assert_eq!(
            t.view()
                .get(dom(xen_ids::DomId(3)), "/local/domain/3/a", Need::Read)
                .unwrap()
                .value,
            b""
        );
        assert_eq!(t.view().owned_by(xen_ids::DomId(3)), 4);
        // Another guest sees nothing, and cannot tell what exists.
        assert_eq!(
            t.view()
                .get(dom(xen_ids::DomId(4)), "/local/domain/3/a", Need::Read)
                .unwrap_err(),
            XsdError::EACCES
        );
        assert_eq!(
            t.view()
                .get(dom(xen_ids::DomId(4)), "/local/domain/3/zz", Need::Read)
                .unwrap_err(),
            XsdError::EACCES
        );
        assert_eq!(
            t.view()
                .create_or_write(dom(xen_ids::DomId(4)), "/local/domain/3/x", Some(b"1"), LIM)
                .unwrap_err(),
            XsdError::EACCES
        );
        let ch = t
            .view()
            .rm(dom(xen_ids::DomId(3)), "/local/domain/3/a")
            .unwrap();
        assert_eq!(ch.len(), 3);
        assert_eq!(ch.last().unwrap().matching, Match::Subtree);
        assert_eq!(t.view().owned_by(xen_ids::DomId(3)), 1);
        assert!(t
            .view()
            .rm(dom(xen_ids::DomId(3)), "/local/domain/3/a")
            .unwrap()
            .is_empty());
        assert_eq!(
            t.view()
                .rm(dom(xen_ids::DomId(3)), "/local/domain/3/a/b")
                .unwrap_err(),
            XsdError::ENOENT
        );
    }

    #[test]
    fn missing_node_errno_needs_any_right_on_the_parent() {
        // xenstored: SET_PERMS (write + owner) on a missing node under a parent that
        // grants only write answers ENOENT, not EACCES.
        let mut t = Tree::new();
        t.view()
            .create_or_write(dom(xen_ids::DomId(0)), "/shared", None, LIM)
            .unwrap();
        t.view()
            .set_perms(
                dom(xen_ids::DomId(0)),
                "/shared",
                &[XsPerm::new(xen_ids::DomId(0), XsAccess::Write)],
                LIM,
            )
            .unwrap();
        assert_eq!(
            t.view()
                .set_perms(
                    dom(xen_ids::DomId(1)),
                    "/shared/a",
                    &[XsPerm::new(xen_ids::DomId(1), XsAccess::None)],
                    LIM
                )
                .unwrap_err(),
            XsdError::ENOENT
        );
        assert_eq!(
            t.view()
                .get(dom(xen_ids::DomId(1)), "/shared/a", Need::Read)
                .unwrap_err(),
            XsdError::EACCES
        );
    }

    #[test]
    fn node_quota_and_owner_change() {
        let mut t = Tree::new();
        t.view()
            .create_or_write(dom(xen_ids::DomId(0)), "/local/domain/5", None, LIM)
            .unwrap();
        t.view()
            .set_perms(
                dom(xen_ids::DomId(0)),
                "/local/domain/5",
                &[XsPerm::new(xen_ids::DomId(5), XsAccess::None)],
                LIM,
            )
            .unwrap();
        let small = NodeLimits { nodes: 3, ..LIM };
        t.view()
            .create_or_write(
                dom(xen_ids::DomId(5)),
                "/local/domain/5/a",
                Some(b""),
                small,
            )
            .unwrap();
        t.view()
            .create_or_write(
                dom(xen_ids::DomId(5)),
                "/local/domain/5/b",
                Some(b""),
                small,
            )
            .unwrap();
        assert_eq!(
            t.view()
                .create_or_write(
                    dom(xen_ids::DomId(5)),
                    "/local/domain/5/c",
                    Some(b""),
                    small
                )
                .unwrap_err(),
            XsdError::ENOSPC
        );
        assert_eq!(
            t.view()
                .set_perms(
                    dom(xen_ids::DomId(5)),
                    "/local/domain/5/a",
                    &[XsPerm::new(xen_ids::DomId(6), XsAccess::None)],
                    LIM
                )
                .unwrap_err(),
            XsdError::EPERM
        );
        t.view()
            .set_perms(
                dom(xen_ids::DomId(5)),
                "/local/domain/5/a",
                &[
                    XsPerm::new(xen_ids::DomId(5), XsAccess::None),
                    XsPerm::new(xen_ids::DomId(6), XsAccess::Read),
                ],
                LIM,
            )
            .unwrap();
        assert!(t
            .view()
            .get(dom(xen_ids::DomId(6)), "/local/domain/5/a", Need::Read)
            .is_ok());
        assert_eq!(
            t.view()
                .get(dom(xen_ids::DomId(6)), "/local/domain/5/a", Need::Write)
                .unwrap_err(),
            XsdError::EACCES
        );
    }
}
