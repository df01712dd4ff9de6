//! One file per subcommand. Each reads its arguments, runs the pipeline stages it needs (settings →
//! render → plan → apply → runtime → verify, each in its own module) and returns how the run ended.

pub mod backup;
pub mod bundle;
pub mod bundle_images;
pub mod certs;
pub mod clients;
pub mod completions;
pub mod doctor;
pub mod down;
pub mod gc;
pub mod gc_site;
pub mod import;
pub mod logs;
pub mod maintain;
pub mod man;
pub mod prepare_user;
pub mod render;
pub mod site;
pub mod status;
pub mod trust;
pub mod up;
pub mod verify;
