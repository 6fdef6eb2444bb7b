//! The image service domain: references, the registry client, the content
//! store, layer unpacking and the image catalogue.

pub mod content;
pub mod layers;
pub mod manager;
pub mod reference;
pub mod registry;
pub mod unpack;
pub mod user;
