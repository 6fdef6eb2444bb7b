//! Layer applier. (stub: being written)
