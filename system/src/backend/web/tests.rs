//! In-process tests of every route.
