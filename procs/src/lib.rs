//! The processes starttls-matrix starts (client programs, batch workers, real MTAs): each under
//! a guard that ends it when the harness dies by any signal (SIGKILL included), in its own
//! process group, with a timeout, killed as a group and reaped; every live group is registered
//! so that Ctrl-C, SIGTERM and panics end them all, and nothing else. Also: which TLS library a
//! process or program really loads, read from the process or the loader; and the run's work
//! directories, which name their owner so that those of a run that died can be removed.

pub mod child;
pub mod guard;
pub mod library;
pub mod registry;
pub mod workdir;

pub use child::{Exit, LongLived, SpawnError, Spec, capture, run, which};
pub use guard::Confine;
pub use library::{LibraryFamily, Loaded};
pub use registry::{group_members, kill_all};
