//! State that does not depend on the thread model: the command codec, the
//! persisted peer state, and raft-rs's storage over both.

pub mod cmd;
pub mod state;
pub mod storage;
