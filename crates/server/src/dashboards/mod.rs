//! Dashboards: their files (`definition`), each panel's data (`panel`) and
//! the live feed that computes them at every tick for the open pages
//! (`feed`).

mod definition;
mod feed;
mod panel;

pub use definition::{BUILT_IN, Dashboard, load};
pub use feed::{Feed, Feeds, Frame};
