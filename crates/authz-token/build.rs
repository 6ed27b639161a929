//! Rebuilds the crate when a migration is added: `sqlx::migrate!` embeds the migration folders,
//! but the compiler only notices edits to files it already included, not new files.

fn main() {
    println!("cargo:rerun-if-changed=../../migrations/sqlite");
    println!("cargo:rerun-if-changed=../../migrations/postgres");
}
