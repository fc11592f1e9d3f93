// `sqlx::migrate!` embeds the migrations at compile time; this rebuilds the crate when
// one is added (what `sqlx migrate build-script` generates).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
