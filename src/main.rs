//! The `p4fabric` command.

fn main() {
    println!("p4fabric");
}
