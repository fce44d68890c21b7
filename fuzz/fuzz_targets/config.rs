//! The config compiler: any text compiles or reports problems, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let (_config, _problems) = switchyard::config::compile_str(text, "fuzz.yaml", &|name| {
        (name == "SET").then(|| "value".to_owned())
    });
});
