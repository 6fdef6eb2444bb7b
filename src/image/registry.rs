//! OCI distribution client. (stub: being written)
