//! Personal data (SPEC §8): what pulse keeps about people apart from the lake, and how it lets
//! go of it. [`directory`] holds display names (`<state_dir>/members.sqlite`); [`forgotten`]
//! records erased members as keyed hashes in the lake so no writer brings them back;
//! [`forget`] erases a member from everything pulse keeps; [`retention`] nulls old text.

pub mod directory;
pub mod forget;
pub mod forgotten;
pub mod retention;

pub use directory::Directory;
pub use forgotten::Forgotten;
