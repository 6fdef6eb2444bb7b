//! Image references: parsing and Docker-style normalisation.
//! (stub: being written)
