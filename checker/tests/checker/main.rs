//! The checker's tests, one binary: each workload's check, histories and their files, and the
//! simulated stores that generate valid histories for property tests.

mod history;
mod list_append;
mod register;
mod set;
mod sim;
