//! Runs the examples that the documentation shows.

#[path = "../examples/custom_plugin.rs"]
mod custom_plugin;

#[test]
fn custom_plugin_example_runs() {
    custom_plugin::main();
}
