//! DBA-VM netback, the operator side: what the `netback` CLI does besides serving.
//!
//! * [`exposition`]: parsing the Prometheus text format the daemon serves;
//! * [`mod@scrape`]: fetching it over HTTP;
//! * [`metric`]: the metric names read here (the daemon's table of families,
//!   `netback::metrics::FAMILIES`, is the authority; a test there checks these names);
//! * [`top`]: the `netback top` table built from a scrape;
//! * [`mod@status`]: `netback status`, each vif's queues with their worker and counters;
//! * [`interval`]: the `1s` / `500ms` intervals of `top` and `serve --metrics-interval`;
//! * [`sla`]: a vif's SLA keys in xenstore: read, validate, merge, write, remove, show.
//!
//! This crate does not depend on the `netback` library: it talks to the daemon only
//! through its metrics endpoint and xenstore.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod exposition;
pub mod interval;
pub mod metric;
pub mod scrape;
pub mod sla;
pub mod status;
pub mod top;

pub use exposition::{parse_exposition, Sample};
pub use scrape::{scrape, ScrapeError};
