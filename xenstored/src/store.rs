//! The server state and the semantics of every request: connections, watches,
//! transactions, domain accounting, on top of the node [`Tree`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use super::conn::Outbox;
use super::tree::{self, rights, Caller, Change, Need, NodeLimits, Tree, View};
use super::watch::Watch;
use super::{ConnId, Quotas};
use xen_ids::DomId;
use xenstore::perms::{encode_perms, parse_perms, XsPerm};
use xenstore::wire::{
    self, encode_strings, one_arg, split_str_args, PathKind, WireError, XsMessage, XsdError,
    XsdSockmsgType, XENSTORE_ABS_PATH_MAX, XENSTORE_PAYLOAD_MAX,
};

/// One connection.
pub(super) struct ConnState {
    domid: DomId,
    watches: Vec<Watch>,
    outbox: Arc<Outbox>,
}

/// One open transaction: its overlay on the main tree, with the journal.
struct Transaction {
    conn: ConnId,
    domid: DomId,
    tree: Tree,
    /// Changes to fire at commit: one per node, in the order first queued, `Exact`
    /// only if every change queued for the node was (xenstored's `queue_watches`).
    events: Vec<Change>,
}

/// Per-domain accounting (over all connections of the domain).
#[derive(Default)]
struct DomainAcct {
    watches: u32,
    transactions: u32,
}

/// Everything the server knows; guarded by one lock, every request runs to completion
/// under it (like xenstored, which is single-threaded).
pub(super) struct State {
    tree: Tree,
    conns: HashMap<ConnId, ConnState>,
    txs: HashMap<u32, Transaction>,
    next_tx: u32,
    domains: BTreeMap<DomId, DomainAcct>,
    introduced: BTreeSet<DomId>,
}

fn special_change(path: &str) -> Change {
    Change {
        path: path.to_owned(),
        matching: tree::Match::Subtree,
        perms: Vec::new(),
    }
}

/// The encoded `XS_WATCH_EVENT` for `path` and `token`.
fn watch_event(path: &str, token: &str) -> Vec<u8> {
    let payload = encode_strings(&[path, token]);
    match XsMessage::new(XsdSockmsgType::WatchEvent, 0, 0, payload) {
        Ok(m) => m.encode(),
        // Paths and tokens are bounded by the request that carried them.
        Err(_) => Vec::new(),
    }
}

impl State {
    /// The initial state: the tree of [`Tree::new`], dom0 introduced.
    pub(super) fn new() -> Self {
        State {
            tree: Tree::new(),
            conns: HashMap::new(),
            txs: HashMap::new(),
            next_tx: 1,
            domains: BTreeMap::new(),
            introduced: [DomId::DOM0].into_iter().collect(),
        }
    }

    /// The main tree.
    pub(super) fn tree(&self) -> &Tree {
        &self.tree
    }

    /// Registers a connection.
    pub(super) fn add_conn(&mut self, id: ConnId, domid: DomId, outbox: Arc<Outbox>) {
        self.conns.insert(
            id,
            ConnState {
                domid,
                watches: Vec::new(),
                outbox,
            },
        );
    }

    /// The domain and outbox of a connection.
    pub(super) fn conn(&self, id: ConnId) -> Option<(DomId, Arc<Outbox>)> {
        self.conns
            .get(&id)
            .map(|c| (c.domid, Arc::clone(&c.outbox)))
    }

    /// Number of connections.
    pub(super) fn conn_count(&self) -> usize {
        self.conns.len()
    }

    /// Every connection's outbox.
    pub(super) fn outboxes(&self) -> Vec<Arc<Outbox>> {
        self.conns.values().map(|c| Arc::clone(&c.outbox)).collect()
    }

    /// Introduces a domain (idempotent): creates its home owned by it if missing and
    /// fires `@introduceDomain`.
    pub(super) fn introduce(&mut self, domid: DomId) {
        if !self.introduced.insert(domid) {
            return;
        }
        let home = format!("/local/domain/{domid}");
        let dom0 = Caller { domid: DomId::DOM0 };
        let lim = NodeLimits {
            nodes: u32::MAX,
            node_size: usize::MAX,
            perms: usize::MAX,
        };
        let mut changes = Vec::new();
        if self.tree.raw(&home).is_none() {
            if let Ok(Some(c)) = self.tree.view().create_or_write(dom0, &home, None, lim) {
                changes.push(c);
            }
            let owner = [xenstore::perms::XsPerm::new(
                domid,
                xenstore::perms::XsAccess::None,
            )];
            if let Ok(c) = self.tree.view().set_perms(dom0, &home, &owner, lim) {
                changes.push(c);
            }
        }
        changes.push(special_change("@introduceDomain"));
        self.fire(&changes);
    }

    /// A domain died: it is no longer introduced and `@releaseDomain` fires, as
    /// xenstored does when Xen reports a destroyed domain. Its nodes stay (removing the
    /// device directories is the toolstack's job). `false` if it was not introduced.
    pub(super) fn domain_died(&mut self, domid: DomId) -> bool {
        if domid == DomId::DOM0 || !self.introduced.remove(&domid) {
            return false;
        }
        self.fire(&[special_change("@releaseDomain")]);
        true
    }

    /// Forgets a connection: its watches and transactions.
    pub(super) fn drop_conn(&mut self, id: ConnId) {
        let Some(c) = self.conns.remove(&id) else {
            return;
        };
        let acct = self.domains.entry(c.domid).or_default();
        acct.watches = acct.watches.saturating_sub(c.watches.len() as u32);
        let txs: Vec<u32> = self
            .txs
            .iter()
            .filter(|(_, t)| t.conn == id)
            .map(|(k, _)| *k)
            .collect();
        for t in txs {
            self.end_tx_accounting(t);
        }
    }

    fn end_tx_accounting(&mut self, tx: u32) -> Option<Transaction> {
        let t = self.txs.remove(&tx)?;
        let acct = self.domains.entry(t.domid).or_default();
        acct.transactions = acct.transactions.saturating_sub(1);
        Some(t)
    }

    /// Releases a domain; returns the outboxes of its connections, to close.
    pub(super) fn release(&mut self, domid: DomId) -> Vec<Arc<Outbox>> {
        let ids: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.domid == domid)
            .map(|(k, _)| *k)
            .collect();
        let mut outboxes = Vec::new();
        for id in ids {
            if let Some(c) = self.conns.get(&id) {
                outboxes.push(Arc::clone(&c.outbox));
            }
            self.drop_conn(id);
        }
        let dom0 = Caller { domid: DomId::DOM0 };
        let mut changes = Vec::new();
        for p in self.tree.paths_owned_by(domid) {
            // Removing a parent first removes its owned children too; later rm's of
            // those paths then find nothing (or no parent) and are skipped.
            if self.tree.raw(&p).is_some() {
                if let Ok(c) = self.tree.view().rm(dom0, &p) {
                    changes.extend(c);
                }
            }
        }
        self.introduced.remove(&domid);
        self.domains.remove(&domid);
        changes.push(special_change("@releaseDomain"));
        self.fire(&changes);
        outboxes
    }

    /// Sends watch events for `changes` to every matching watch.
    pub(super) fn fire(&self, changes: &[Change]) {
        for c in self.conns.values() {
            let caller = Caller { domid: c.domid };
            for ch in changes {
                let permitted =
                    caller.privileged() || ch.perms.iter().any(|p| rights(caller, p).read);
                if !permitted {
                    continue;
                }
                for w in &c.watches {
                    if w.fires_for(&ch.path, ch.matching) {
                        c.outbox.push(watch_event(w.event_path(&ch.path), &w.token));
                    }
                }
            }
        }
    }

    /// Resolves and checks a path from domain `domid` (xenstored's `canonicalize`).
    /// Returns the absolute path and whether the caller gave a relative one.
    fn canonicalize(
        &self,
        quotas: &Quotas,
        domid: DomId,
        path: &str,
        kind: PathKind,
    ) -> Result<(String, bool), XsdError> {
        wire::validate_path(path, kind).map_err(|_| XsdError::EINVAL)?;
        let relative = !path.starts_with('/') && !path.starts_with('@');
        let abs = if relative {
            format!("/local/domain/{domid}/{path}")
        } else {
            path.to_owned()
        };
        if abs.len() > XENSTORE_ABS_PATH_MAX {
            return Err(XsdError::EINVAL);
        }
        if domid != DomId::DOM0 {
            let local = abs
                .strip_prefix("/local/domain/")
                .and_then(|r| r.split_once('/'))
                .filter(|(d, _)| {
                    !d.is_empty() && d.len() <= 5 && d.bytes().all(|b| b.is_ascii_digit())
                })
                .map_or(abs.as_str(), |(_, rest)| rest);
            if local.len() > quotas.path_max {
                return Err(XsdError::EINVAL);
            }
        }
        Ok((abs, relative))
    }

    /// Runs `f` on the tree the request addresses (the transaction's copy, or the main
    /// tree) and fires (or, in a transaction, queues) the resulting changes.
    fn on_tree<R>(
        &mut self,
        tx: Option<u32>,
        f: impl FnOnce(&mut View<'_>) -> Result<(R, Vec<Change>), XsdError>,
    ) -> Result<R, XsdError> {
        match tx {
            Some(t) => {
                let State { tree, txs, .. } = self;
                let txn = txs.get_mut(&t).ok_or(XsdError::ENOENT)?;
                let (r, ch) = f(&mut txn.tree.over(tree))?;
                for c in ch {
                    queue_change(&mut txn.events, c);
                }
                Ok(r)
            }
            None => {
                let (r, ch) = f(&mut self.tree.view())?;
                self.fire(&ch);
                Ok(r)
            }
        }
    }

    /// Handles one request of connection `id` (domain `domid`): the reply payload or
    /// the error to answer. Events for the connection itself that must follow the reply
    /// go to `after`.
    pub(super) fn handle(
        &mut self,
        q: &Quotas,
        id: ConnId,
        domid: DomId,
        msg: &XsMessage,
        after: &mut Vec<Vec<u8>>,
    ) -> Result<Vec<u8>, XsdError> {
        use XsdSockmsgType as T;
        let caller = Caller { domid };
        let Some(ty) = msg.msg_type() else {
            return Err(XsdError::ENOSYS);
        };
        let privileged_only = matches!(ty, T::Release | T::IsDomainIntroduced);
        let supported = matches!(
            ty,
            T::Directory
                | T::Read
                | T::GetPerms
                | T::Watch
                | T::Unwatch
                | T::TransactionStart
                | T::TransactionEnd
                | T::Release
                | T::GetDomainPath
                | T::Write
                | T::Mkdir
                | T::Rm
                | T::SetPerms
                | T::IsDomainIntroduced
                | T::ResetWatches
                | T::DirectoryPart
        );
        if !supported {
            return Err(XsdError::ENOSYS);
        }
        if privileged_only && !caller.privileged() {
            return Err(XsdError::EACCES);
        }
        let p = &msg.payload;
        // Transaction lookup (ignored for WATCH/UNWATCH, as in xenstored).
        let tx = match (ty, msg.header.tx_id) {
            (T::Watch | T::Unwatch, _) | (_, 0) => None,
            (_, t) => match self.txs.get(&t) {
                Some(txn) if txn.conn == id => Some(t),
                _ => return Err(XsdError::ENOENT),
            },
        };
        let arg_err = |e: WireError| e.xsd_error();
        match ty {
            T::Read => {
                let (path, _) =
                    self.canonicalize(q, domid, one_arg(p).map_err(arg_err)?, PathKind::Node)?;
                self.on_tree(tx, |t| {
                    Ok((t.get(caller, &path, Need::Read)?.value.clone(), vec![]))
                })
            }
            T::Directory => {
                let (path, _) =
                    self.canonicalize(q, domid, one_arg(p).map_err(arg_err)?, PathKind::Node)?;
                self.on_tree(tx, |t| {
                    let n = t.get(caller, &path, Need::Read)?;
                    Ok((
                        encode_strings(&n.children.iter().collect::<Vec<_>>()),
                        vec![],
                    ))
                })
            }
            T::DirectoryPart => {
                let args = split_str_args(p).map_err(arg_err)?;
                let [path, off] = args.as_slice() else {
                    return Err(XsdError::EINVAL);
                };
                let off: usize = off.parse().map_err(|_| XsdError::EINVAL)?;
                let (path, _) = self.canonicalize(q, domid, path, PathKind::Node)?;
                self.on_tree(tx, |t| {
                    let n = t.get(caller, &path, Need::Read)?;
                    let children = encode_strings(&n.children.iter().collect::<Vec<_>>());
                    let gen = t.gen_of(&path);
                    Ok((directory_part(gen, &children, off), vec![]))
                })
            }
            T::GetPerms => {
                let (path, _) =
                    self.canonicalize(q, domid, one_arg(p).map_err(arg_err)?, PathKind::Node)?;
                self.on_tree(tx, |t| {
                    Ok((
                        encode_perms(&t.get(caller, &path, Need::Read)?.perms),
                        vec![],
                    ))
                })
            }
            T::Write => {
                let (path, value) = wire::split_write(p).map_err(arg_err)?;
                let (path, _) = self.canonicalize(q, domid, path, PathKind::Node)?;
                let lim = limits(q);
                self.on_tree(tx, |t| {
                    let ch = t.create_or_write(caller, &path, Some(value), lim)?;
                    Ok((wire::XS_OK.to_vec(), ch.into_iter().collect()))
                })
            }
            T::Mkdir => {
                let (path, _) =
                    self.canonicalize(q, domid, one_arg(p).map_err(arg_err)?, PathKind::Node)?;
                let lim = limits(q);
                self.on_tree(tx, |t| {
                    let ch = t.create_or_write(caller, &path, None, lim)?;
                    Ok((wire::XS_OK.to_vec(), ch.into_iter().collect()))
                })
            }
            T::Rm => {
                let (path, _) =
                    self.canonicalize(q, domid, one_arg(p).map_err(arg_err)?, PathKind::Node)?;
                self.on_tree(tx, |t| Ok((wire::XS_OK.to_vec(), t.rm(caller, &path)?)))
            }
            T::SetPerms => {
                let args = split_str_args(p).map_err(arg_err)?;
                let Some((path, perms)) = args.split_first() else {
                    return Err(XsdError::EINVAL);
                };
                let perms = parse_perms(perms).map_err(arg_err)?;
                let (path, _) = self.canonicalize(q, domid, path, PathKind::Node)?;
                let lim = limits(q);
                self.on_tree(tx, |t| {
                    let ch = t.set_perms(caller, &path, &perms, lim)?;
                    Ok((wire::XS_OK.to_vec(), vec![ch]))
                })
            }
            T::GetDomainPath => {
                let d = wire::parse_domid(one_arg(p).map_err(arg_err)?).map_err(arg_err)?;
                Ok(encode_strings(&[format!("/local/domain/{d}")]))
            }
            T::IsDomainIntroduced => {
                let d = wire::parse_domid(one_arg(p).map_err(arg_err)?).map_err(arg_err)?;
                Ok(if self.introduced.contains(&d) {
                    b"T\0".to_vec()
                } else {
                    b"F\0".to_vec()
                })
            }
            T::Release => {
                let d = wire::parse_domid(one_arg(p).map_err(arg_err)?).map_err(arg_err)?;
                if d == DomId::DOM0 || !self.introduced.contains(&d) {
                    return Err(XsdError::EINVAL);
                }
                for o in self.release(d) {
                    o.close();
                }
                Ok(wire::XS_OK.to_vec())
            }
            T::Watch => {
                let args = split_str_args(p).map_err(arg_err)?;
                let (path, token, depth) = match args.as_slice() {
                    [path, token] => (*path, *token, None),
                    [path, token, depth] => (
                        *path,
                        *token,
                        Some(depth.parse::<u32>().map_err(|_| XsdError::EINVAL)?),
                    ),
                    _ => return Err(XsdError::EINVAL),
                };
                let (abs, relative) = self.canonicalize(q, domid, path, PathKind::Watch)?;
                let conn = self.conns.get(&id).ok_or(XsdError::EIO)?;
                if conn
                    .watches
                    .iter()
                    .any(|w| w.path == abs && w.token == token)
                {
                    return Err(XsdError::EEXIST);
                }
                let acct = self.domains.entry(domid).or_default();
                if !caller.privileged() && acct.watches >= q.watches {
                    return Err(XsdError::ENOSPC);
                }
                acct.watches += 1;
                let prefix_len = if relative {
                    format!("/local/domain/{domid}/").len()
                } else {
                    0
                };
                let w = Watch {
                    path: abs,
                    token: token.to_owned(),
                    prefix_len,
                    depth,
                };
                // The initial event, after the reply (as xenstored sends it).
                after.push(watch_event(w.event_path(&w.path), &w.token));
                if let Some(c) = self.conns.get_mut(&id) {
                    c.watches.push(w);
                }
                Ok(wire::XS_OK.to_vec())
            }
            T::Unwatch => {
                let args = split_str_args(p).map_err(arg_err)?;
                let [path, token] = args.as_slice() else {
                    return Err(XsdError::EINVAL);
                };
                let (abs, _) = self.canonicalize(q, domid, path, PathKind::Watch)?;
                let conn = self.conns.get_mut(&id).ok_or(XsdError::EIO)?;
                let Some(i) = conn
                    .watches
                    .iter()
                    .position(|w| w.path == abs && w.token == *token)
                else {
                    return Err(XsdError::ENOENT);
                };
                conn.watches.remove(i);
                let acct = self.domains.entry(domid).or_default();
                acct.watches = acct.watches.saturating_sub(1);
                Ok(wire::XS_OK.to_vec())
            }
            T::ResetWatches => {
                let conn = self.conns.get_mut(&id).ok_or(XsdError::EIO)?;
                let n = conn.watches.len() as u32;
                conn.watches.clear();
                let acct = self.domains.entry(domid).or_default();
                acct.watches = acct.watches.saturating_sub(n);
                let mine: Vec<u32> = self
                    .txs
                    .iter()
                    .filter(|(_, t)| t.conn == id)
                    .map(|(k, _)| *k)
                    .collect();
                for t in mine {
                    self.end_tx_accounting(t);
                }
                Ok(wire::XS_OK.to_vec())
            }
            T::TransactionStart => {
                if tx.is_some() {
                    return Err(XsdError::EBUSY);
                }
                let acct = self.domains.entry(domid).or_default();
                if !caller.privileged() && acct.transactions >= q.transactions {
                    return Err(XsdError::ENOSPC);
                }
                acct.transactions += 1;
                let mut t = self.next_tx;
                while t == 0 || self.txs.contains_key(&t) {
                    t = t.wrapping_add(1);
                }
                self.next_tx = t.wrapping_add(1);
                let tree = Tree::overlay();
                self.txs.insert(
                    t,
                    Transaction {
                        conn: id,
                        domid,
                        tree,
                        events: Vec::new(),
                    },
                );
                Ok(encode_strings(&[t.to_string()]))
            }
            T::TransactionEnd => {
                let commit = match one_arg(p).map_err(arg_err)? {
                    "T" => true,
                    "F" => false,
                    _ => return Err(XsdError::EINVAL),
                };
                let Some(t) = tx else {
                    return Err(XsdError::ENOENT);
                };
                let txn = self.end_tx_accounting(t).ok_or(XsdError::ENOENT)?;
                if commit {
                    self.commit(txn)?;
                }
                Ok(wire::XS_OK.to_vec())
            }
            _ => Err(XsdError::ENOSYS),
        }
    }

    fn commit(&mut self, txn: Transaction) -> Result<(), XsdError> {
        let Some(journal) = txn.tree.journal.as_ref() else {
            return Err(XsdError::EIO);
        };
        for (path, gen) in &journal.accessed {
            if self.tree.raw(path).map(|n| n.gen) != *gen {
                return Err(XsdError::EAGAIN);
            }
        }
        // Like xenstored's finalize_transaction: node by node in order of first access,
        // apply the change, then fire its watches, deciding who may see the event from
        // the state at that moment: the node's permissions when the transaction first
        // accessed it, or, if the node exists, its permissions or its parent's. (So a
        // node created and removed inside the transaction fires nothing, and a node
        // committed before its parent's new permissions is judged by the old ones.)
        for path in &journal.order {
            if journal.written.contains(path) {
                if let Some(node) = txn.tree.layer_entry(path) {
                    self.tree.view().put(path, node.cloned());
                }
            }
            let Some(c) = txn.events.iter().find(|c| &c.path == path) else {
                continue;
            };
            let mut perms: Vec<Vec<XsPerm>> = Vec::new();
            if let Some(p) = journal.first_perms.get(path) {
                perms.push(p.clone());
            }
            if let Some(n) = self.tree.raw(path) {
                perms.push(n.perms.clone());
                if let Some(par) = tree::parent_of(path).and_then(|p| self.tree.raw(p)) {
                    perms.push(par.perms.clone());
                }
            }
            if !perms.is_empty() {
                self.fire(&[Change {
                    path: c.path.clone(),
                    matching: c.matching,
                    perms,
                }]);
            }
        }
        Ok(())
    }
}

/// Adds a transaction's change to its commit queue, merging with an earlier change
/// of the same node.
fn queue_change(queue: &mut Vec<Change>, c: Change) {
    match queue.iter_mut().find(|q| q.path == c.path) {
        Some(q) => {
            if c.matching == tree::Match::Subtree {
                q.matching = tree::Match::Subtree;
            }
            for p in c.perms {
                if !q.perms.contains(&p) {
                    q.perms.push(p);
                }
            }
        }
        None => queue.push(c),
    }
}

fn limits(q: &Quotas) -> NodeLimits {
    NodeLimits {
        nodes: q.nodes,
        node_size: q.node_size,
        perms: q.perms,
    }
}

/// The `DIRECTORY_PART` reply: `<gencnt>|` then the children list from byte `off`,
/// cut at a name boundary to fit the payload; an extra NUL marks the end of the list.
fn directory_part(gen: u64, children: &[u8], off: usize) -> Vec<u8> {
    let mut out = encode_strings(&[gen.to_string()]);
    if off >= children.len() {
        out.push(0);
        return out;
    }
    let max = XENSTORE_PAYLOAD_MAX - out.len() - 1;
    let rest = &children[off..];
    let mut len = 0;
    for name in rest.split_inclusive(|b| *b == 0) {
        if len + name.len() > max {
            break;
        }
        len += name.len();
    }
    out.extend_from_slice(&rest[..len]);
    if off + len == children.len() {
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_part_pages() {
        let kids = encode_strings(&["a", "bb"]);
        assert_eq!(directory_part(7, &kids, 0), b"7\0a\0bb\0\0");
        assert_eq!(directory_part(7, &kids, 2), b"7\0bb\0\0");
        assert_eq!(directory_part(7, &kids, 9), b"7\0\0");
    }
}
