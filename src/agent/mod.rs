//! One agent per switch: keeps the switch's installed entities equal to the
//! desired ones, level-triggered.
//!
//! The agent connects (retrying with backoff), arbitrates, makes sure the
//! switch runs our pipeline (pushing it only when the cookie differs),
//! *reads back* what the switch holds, and writes only the difference —
//! never flush-and-rewrite. Desired state arrives through a watch channel:
//! latest wins, so a slow switch skips stale intermediate states. Failed
//! updates are retried with capped backoff while the rest proceed. A switch
//! that restarts (stream lost, no pipeline) is restored in full. Each agent
//! is its own task: a slow or dead switch never delays another.
//!
//! Owns everything about one switch's session, one job per file:
//!
//! - `handle`: the API — configuration, status, the controller's handle,
//!   `spawn`;
//! - `snapshot`: desired and installed state, paired up for the diff;
//! - `session`: the session and arbitration loop, which does the I/O;
//! - `scheduler`: when to read back and when to reconcile, a state
//!   machine without I/O;
//! - `reconcile`: one pass (diff, staged writes, results).
//!
//! May use: `compile` (the diff, the fabric view), `p4rt`, `net`
//! (which frames are control frames) and `target` (a switch's port map).
//! Used by the controller; it knows nothing of the controller, config or
//! topology.

mod handle;
mod reconcile;
mod scheduler;
mod session;
mod snapshot;

pub use handle::{
    spawn, AgentConfig, AgentCounters, AgentHandle, AgentStatus, ReadBack, SessionState,
    SwitchEvent, READ_BACK_WAIT, RECONCILE_BUCKETS,
};
pub(crate) use session::sleep_until_opt;
pub use snapshot::{Desired, DesiredEntities};
