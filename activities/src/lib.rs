//! The order domain: activities and their compensations over one storage contract with
//! two backends. See docs/ARCHITECTURE.md, docs/store.md and docs/errors.md.

pub mod activity;
pub mod amend;
pub mod audit;
pub mod errors;
pub mod events;
pub mod faults;
pub mod feeds;
pub mod gateway;
pub mod lambda;
pub mod ledger;
pub mod model;
pub mod seed;
pub mod sourcing;
pub mod store;

pub use activity::{invoke, Ctx, ACTIVITIES};
pub use errors::{ActivityError, ErrorKind};
