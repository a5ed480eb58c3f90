//! Benchmarks of the engagement index beside their limits.
//!
//! - [`data`]: the platform's 1000-post Update sample, patched in place for other
//!   residents and timestamps, and the posts, keys and queries derived from it;
//! - [`raw`]: RocksDB used directly with the store's options (the limits), disk and
//!   memory helpers;
//! - [`load`]: the end-to-end HTTP load generator behind `ei-load`;
//! - [`report`]: its results as Markdown and JSON;
//! - [`fill`]: a large index with a region's variety, written as SST files and
//!   ingested (`ei-fill`, the 100 M-post measurement);
//! - [`gen`]: posts with a region's variety as a MySQL export (`ei-gen`), for the
//!   import and restore benchmarks.
//!
//! The criterion benches in `benches/` (codec, store) use `data` and `raw`.

pub mod data;
pub mod fill;
pub mod gen;
pub mod load;
pub mod raw;
pub mod report;
