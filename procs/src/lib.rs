//! The processes starttls-matrix starts (client programs, batch workers, real MTAs): each in
//! its own process group, with a timeout, killed as a group and reaped; every live group is
//! registered so that Ctrl-C, SIGTERM and panics end them all, and nothing else. Also: which
//! TLS library a process or program really loads, read from the process or the loader.

pub mod child;
pub mod library;
pub mod registry;

pub use child::{Exit, LongLived, SpawnError, Spec, capture, run, which};
pub use library::{LibraryFamily, Loaded};
pub use registry::{group_members, kill_all};
