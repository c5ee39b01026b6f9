//! The order system behind the Orders API, as a library without HTTP: the order saga
//! (its definition and name), the activities run in-process as its Lambda functions
//! (one resolver from function ARN to activity, one mapping of an activity's error to
//! a Lambda failure), the warehouses' side of picking, and the operations the Orders
//! API serves. It sees executions only through saga-core's `StepFunctions` trait and
//! orders only through the activities' store, so the same service runs on `oms up`'s
//! runtime and on a deployed stack. The oms binary serves it over HTTP
//! (`oms/src/orders_http.rs`), mapping each [`Problem`]'s status to a response.

mod lambda;
mod listing;
mod problem;
mod saga;
mod service;
mod warehouse;

pub use lambda::{
    function_name, function_not_found, function_of, lambda_failure, resolve, ActivityFunctions,
};
pub use problem::{code, Problem};
pub use saga::{
    local_amend_definition, local_definition, local_prepare_definition, with_local_substitutions,
    SagaLanguage, AMEND_MACHINE_NAME, DEMO_ORDER, FUNCTION_PREFIX, MACHINE_NAME,
    PREPARE_MACHINE_NAME, PREPARE_SUBSTITUTION,
};
pub use service::{Orders, ASSOCIATE_HEADER};
pub use warehouse::Warehouse;
