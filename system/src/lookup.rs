//! Maps looked up on every datagram and never iterated in an order that matters.
//!
//! An ordered map costs several cache-missing node visits per lookup once it holds a thousand
//! entries (a tier-2's sessions, a simulation's hosts); a hash map costs one. [`Lookup`] hashes
//! with a fixed, unseeded hasher (FxHash), so a run's behaviour depends only on the map's
//! contents: same inputs, same probes, same result. Code that uses one must still never let
//! its iteration order decide anything (sums and counts over it are fine; anything emitted,
//! traced or chosen in iteration order is not: use a `BTreeMap` there).

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use rustc_hash::FxHasher;

/// A hash map with a fixed hasher. See the module docs.
pub type Lookup<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;
