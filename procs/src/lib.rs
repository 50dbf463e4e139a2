//! The processes starttls-matrix starts (client programs, batch workers, real MTAs): each
//! started without forking the harness, in its own process group, with a timeout, killed as a
//! group and reaped, and ended within moments when the harness dies by any signal (SIGKILL
//! included: a watchdog, a guard program, the run's cgroup); every live group is registered so
//! that Ctrl-C, SIGTERM and panics end them all, and nothing else. Also: which TLS library a
//! process or program really loads, read from the process or the loader; and the run's work
//! directories, which name their owner so that those of a run that died can be removed.

pub mod child;
pub mod guard;
pub mod guard_binary;
pub mod library;
pub mod registry;
pub mod watchdog;
pub mod workdir;

pub use child::{Exit, LongLived, SpawnError, Spec, capture, run, which};
pub use guard::{Confine, LaunchError, Setup};
pub use library::{LibraryFamily, Loaded};
pub use registry::{group_members, kill_all};
