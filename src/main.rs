//! `shop`: runs Palisade Shop. The services land with the shop issue; until then this binary only says so.

fn main() {
    eprintln!("palisade shop: no services are implemented yet; see README.md");
    std::process::exit(2);
}
