//! Model-based property test: random sequences of WRITE / MKDIR / RM / READ / DIRECTORY
//! (some inside committed or aborted transactions) through the real client against the
//! local server, compared step by step with a plain map of path → value that follows
//! `docs/misc/xenstore.txt` (implicit parents with empty values, recursive removal,
//! `RM` of a missing node fine iff its parent exists).

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use xenstore::{Xenstore, XsClient, XsTx, XsdError};
use xenstored::Xenstored;

const BASE: &str = "/m";

#[derive(Clone, Debug)]
enum Op {
    Write(String, Vec<u8>),
    Mkdir(String),
    Rm(String),
    Read(String),
    Directory(String),
}

fn path() -> impl Strategy<Value = String> {
    proptest::collection::vec(prop_oneof![Just("a"), Just("b"), Just("c")], 1..4)
        .prop_map(|parts| format!("{BASE}/{}", parts.join("/")))
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (path(), proptest::collection::vec(any::<u8>(), 0..6)).prop_map(|(p, v)| Op::Write(p, v)),
        1 => path().prop_map(Op::Mkdir),
        2 => path().prop_map(Op::Rm),
        2 => path().prop_map(Op::Read),
        1 => path().prop_map(Op::Directory),
    ]
}

#[derive(Clone, Debug)]
enum Step {
    Plain(Op),
    /// Ops in one transaction, then commit (`true`) or abort.
    Tx(Vec<Op>, bool),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => op().prop_map(Step::Plain),
        1 => (proptest::collection::vec(op(), 1..5), any::<bool>()).prop_map(|(o, c)| Step::Tx(o, c)),
    ]
}

type Model = BTreeMap<String, Vec<u8>>;

fn parent(p: &str) -> &str {
    &p[..p.rfind('/').unwrap_or(0)]
}

/// What the server must answer, applied to the model.
#[derive(Debug, PartialEq)]
enum Outcome {
    Ok,
    Value(Vec<u8>),
    Children(Vec<String>),
    Err(XsdError),
}

fn apply(m: &mut Model, op: &Op) -> Outcome {
    let ensure = |m: &mut Model, p: &str| {
        let mut cur = p;
        while cur.len() > BASE.len() {
            m.entry(cur.to_owned()).or_default();
            cur = parent(cur);
        }
    };
    match op {
        Op::Write(p, v) => {
            ensure(m, p);
            m.insert(p.clone(), v.clone());
            Outcome::Ok
        }
        Op::Mkdir(p) => {
            ensure(m, p);
            Outcome::Ok
        }
        Op::Rm(p) => {
            if m.contains_key(p) {
                let prefix = format!("{p}/");
                m.retain(|k, _| k != p && !k.starts_with(&prefix));
                Outcome::Ok
            } else if parent(p) == BASE || m.contains_key(parent(p)) {
                Outcome::Ok
            } else {
                Outcome::Err(XsdError::ENOENT)
            }
        }
        Op::Read(p) => match m.get(p) {
            Some(v) => Outcome::Value(v.clone()),
            None => Outcome::Err(XsdError::ENOENT),
        },
        Op::Directory(p) => {
            if !m.contains_key(p) {
                return Outcome::Err(XsdError::ENOENT);
            }
            let prefix = format!("{p}/");
            let kids = m
                .keys()
                .filter_map(|k| k.strip_prefix(&prefix))
                .filter(|rest| !rest.contains('/'))
                .map(str::to_owned)
                .collect();
            Outcome::Children(kids)
        }
    }
}

fn run(xs: &XsClient, tx: XsTx, op: &Op) -> Outcome {
    let conv = |e: xenstore::XsError| match e.xsd() {
        Some(x) => Outcome::Err(x),
        None => panic!("transport error {e:?}"),
    };
    let r = match op {
        Op::Write(p, v) => xs.write(tx, p, v).map(|_| Outcome::Ok),
        Op::Mkdir(p) => xs.mkdir(tx, p).map(|_| Outcome::Ok),
        Op::Rm(p) => xs.rm(tx, p).map(|_| Outcome::Ok),
        Op::Read(p) => xs.read(tx, p).map(Outcome::Value),
        Op::Directory(p) => xs.directory(tx, p).map(|mut d| {
            d.sort();
            Outcome::Children(d)
        }),
    };
    r.unwrap_or_else(conv)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn server_matches_the_model(steps in proptest::collection::vec(step(), 1..30)) {
        let xsd = Xenstored::new();
        let xs = XsClient::new(xsd.connect(xen_ids::DomId(0)).unwrap()).unwrap();
        xs.set_request_timeout(Some(Duration::from_secs(10)));
        xs.mkdir(XsTx::NONE, BASE).unwrap();
        let mut model = Model::new();
        for s in &steps {
            match s {
                Step::Plain(op) => {
                    let want = apply(&mut model, op);
                    prop_assert_eq!(run(&xs, XsTx::NONE, op), want, "{:?}", op);
                }
                Step::Tx(ops, commit) => {
                    let tx = xs.transaction_start().unwrap();
                    let mut shadow = model.clone();
                    for op in ops {
                        let want = apply(&mut shadow, op);
                        prop_assert_eq!(run(&xs, tx, op), want, "in tx: {:?}", op);
                    }
                    // Nothing of the transaction is visible outside before the end.
                    for (p, v) in &model {
                        prop_assert_eq!(&xs.read(XsTx::NONE, p).unwrap(), v);
                    }
                    xs.transaction_end(tx, *commit).unwrap();
                    if *commit {
                        model = shadow;
                    }
                }
            }
        }
        let dump: Model = xsd
            .dump()
            .into_iter()
            .filter(|(k, _)| k.starts_with(&format!("{BASE}/")))
            .collect();
        prop_assert_eq!(dump, model);
    }
}
