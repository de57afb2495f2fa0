//! The AQL standard library. (Being written.)
