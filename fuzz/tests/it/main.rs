//! Every kept input (seed corpus and regressions) still passes its target, and a short
//! deterministic mutation run of each target finds nothing.

#[test]
fn every_corpus_and_regression_input_passes() {
    for target in authz_fuzz::targets() {
        for kind in ["corpus", "regressions"] {
            for (path, input) in authz_fuzz::inputs(kind, target.name) {
                let result = std::panic::catch_unwind(|| (target.run)(&input));
                assert!(
                    result.is_ok(),
                    "{} fails on {}",
                    target.name,
                    path.display()
                );
            }
        }
    }
}

#[test]
fn every_target_has_a_seed_corpus() {
    for target in authz_fuzz::targets() {
        let seeds = authz_fuzz::inputs("corpus", target.name).len() + (target.seeds)().len();
        assert!(seeds > 0, "{} has no seeds", target.name);
    }
}

#[test]
fn a_short_mutation_run_of_each_target_finds_nothing() {
    for target in authz_fuzz::targets() {
        let run = authz_fuzz::fuzz(&target, 0x5eed, |n| n < 2_000);
        assert!(run.executions >= 2_000, "{}", target.name);
        if let Some((input, message)) = run.failure {
            panic!(
                "{}: {message} on {:?}",
                target.name,
                String::from_utf8_lossy(&input)
            );
        }
    }
}
