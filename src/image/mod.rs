//! The image service domain: references, the registry client, the content
//! store, layer unpacking and the image catalogue.

pub mod catalog;
pub mod content;
pub mod error;
pub mod layers;
pub mod manager;
pub mod manifest;
mod pull;
pub mod reference;
pub mod registry;
pub mod unpack;
pub mod user;

pub use error::ImageError;
pub use manager::ImageManager;
