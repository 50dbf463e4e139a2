//! The data of a starttls-matrix run as `report.json` holds it, with its own serde shapes: what
//! happened in each cell ([`Outcome`], [`ErrorClass`], [`Stage`], [`Negotiated`]), what was
//! expected ([`Expected`]) and the judgement ([`Verdict`]), cell ids, the server profiles and
//! client stacks that ran, what real MTAs said, and the exit codes. Anyone can read a report
//! from Rust with this crate alone: no tokio, no OpenSSL.

pub mod availability;
pub mod blind;
pub mod cell;
pub mod delivery;
pub mod dh;
pub mod encoding;
pub mod exit;
pub mod expected;
pub mod fault;
pub mod negotiated;
pub mod outcome;
pub mod profile;
pub mod rate;
pub mod record;
pub mod report;
pub mod server_run;
pub mod verdict;

pub use availability::Availability;
pub use blind::{BlindAgreement, BlindCheck};
pub use cell::{BadCellId, CellId};
pub use delivery::{Delivery, DeliveryAttempt, DeliveryResult, Fate, Step};
pub use dh::{DhGroup, DhKind};
pub use encoding::{EncodingChoice, Part, RareCase};
pub use expected::{Expected, ExpectedOutcome};
pub use fault::Fault;
pub use negotiated::{Negotiated, Protocol, Stage};
pub use outcome::{Connection, ErrorClass, Family, Outcome, Reporter, Side};
pub use profile::{
    Backend, CertKind, DheMode, Group, Library, Linkage, LinkedLibrary, Mta, ProfileError, Section, ServerProfile,
    TlsBackend, TlsVersion,
};
pub use rate::{Here, RareNote, Rate, Seen, Tolerance};
pub use record::{ClientHelloInfo, ConnectionRecord, End, Refusal};
pub use report::{CellReport, ClientInfo, Report, RunInfo, SCHEMA_VERSION};
pub use server_run::{LoadedLibrary, MtaInfo, MtaRun, StopReport};
pub use verdict::Verdict;
