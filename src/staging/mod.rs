//! The live staging environment around the database: the backend's stop/start commands and
//! health URL, the Redis it caches in, and the maintenance flag its web server shows. Used by
//! the cutover, the recovery, `rollback`, `check` and the metrics endpoint.

pub mod backend;
pub mod maintenance;
pub mod redis;
