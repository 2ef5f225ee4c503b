//! The loader never panics, whatever bytes it is given; it answers with a config or diagnostics.

use proptest::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;

fn load(text: &str) {
    let env = BTreeMap::new();
    match nodepool::config::load_str(Path::new("fuzz.yaml"), text, None, &env) {
        Ok(_) => {}
        Err(diags) => assert!(diags.iter().any(|d| d.is_error())),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        load(&String::from_utf8_lossy(&bytes));
    }

    /// YAML-ish text built from the config's own vocabulary reaches deeper than random bytes.
    #[test]
    fn config_shaped_text_never_panics(parts in proptest::collection::vec(
        prop_oneof![
            Just("labels:\n"), Just("providers:\n"), Just("diskimages:\n"), Just("  - name: a\n"),
            Just("    pools:\n"), Just("      - name: p\n"), Just("        labels:\n"),
            Just("          - name: a\n"), Just("            diskimage: a\n"), Just("    parent: a\n"),
            Just("    min-ready: -1\n"), Just("    cloud: c\n"), Just("    driver: static\n"),
            Just("  - &x {name: b}\n"), Just("  - *x\n"), Just("  <<: *x\n"), Just("%(NODEPOOL_X)\n"),
            Just("    rate: .nan\n"), Just("    max-servers: 99999999999999999999\n"), Just("\t"), Just(": ["),
        ],
        0..24,
    )) {
        load(&parts.concat());
    }
}
