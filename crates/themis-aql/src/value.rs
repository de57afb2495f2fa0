//! AQL value semantics. (Being written.)
