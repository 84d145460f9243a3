//! One file per command: each runs its command through the library and prints the result.

pub mod check;
pub mod init_target;
pub mod plan;
pub mod rollback;
pub mod rules;
pub mod run;
pub mod snapshots;
pub mod status;
