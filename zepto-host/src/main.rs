//! The `zepto` command line.
fn main() {
    println!("zepto: not yet implemented");
}
