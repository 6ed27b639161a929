//! Fuzz targets for the code that reads what an attacker sends, and a mutation driver that
//! runs them on the stable toolchain (`cargo xtask fuzz [--secs N]`).
//!
//! Each target takes arbitrary bytes and checks a property beyond "does not panic":
//!
//! - [`classify`]: the classifier and strict JSON parser agree with an ordinary JSON parser
//!   (`serde_json`) on every body they accept: same value, same method, same target.
//! - [`token`]: no altered token verifies with other claims than it was signed with, and
//!   nothing panics on hostile input.
//! - [`sse`]: what a spec-conformant SSE client would take from the rewritten stream never
//!   shows a tool the filter hides, and the output does not depend on where chunks were cut.
//! - [`config`]: the configuration loader answers every file with a configuration or an error
//!   naming a key, never a panic.
//!
//! The driver ([`mutate`]) has no coverage feedback (that needs a nightly toolchain): it
//! mutates the seed corpus in `fuzz/corpus/<target>` with byte-level and dictionary mutations.
//! A failing input is written to `fuzz/regressions/<target>/`; files there are replayed by the
//! crate's tests, so a crash found stays a test case.

pub mod classify;
pub mod config;
pub mod mutate;
pub mod sse;
pub mod token;

/// One fuzz target: its name (also its corpus directory), the function that checks one input
/// (panicking on a violated property), and tokens the mutator splices in.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]),
    pub dictionary: &'static [&'static [u8]],
    /// Seeds made at run time (tokens expire, so they cannot live in the corpus).
    pub seeds: fn() -> Vec<Vec<u8>>,
}

/// Every target.
pub fn targets() -> [Target; 4] {
    [
        Target {
            name: "classify",
            run: classify::run,
            dictionary: classify::DICTIONARY,
            seeds: Vec::new,
        },
        Target {
            name: "token",
            run: token::run,
            dictionary: token::DICTIONARY,
            seeds: token::seeds,
        },
        Target {
            name: "sse",
            run: sse::run,
            dictionary: sse::DICTIONARY,
            seeds: Vec::new,
        },
        Target {
            name: "config",
            run: config::run,
            dictionary: config::DICTIONARY,
            seeds: Vec::new,
        },
    ]
}

/// The directory of the crate (corpus and regressions live below it).
pub fn crate_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The files of `fuzz/<kind>/<target>` (`kind` is `corpus` or `regressions`), sorted.
pub fn inputs(kind: &str, target: &str) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let dir = crate_dir().join(kind).join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .filter_map(|p| std::fs::read(&p).ok().map(|bytes| (p, bytes)))
        .collect()
}

/// What a fuzzing run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub executions: u64,
    /// The first input that broke a property, and the panic message.
    pub failure: Option<(Vec<u8>, String)>,
}

/// Runs `target` on its corpus, then on mutations of it, until `budget` says stop (it is asked
/// before each execution with the count so far).
pub fn fuzz(target: &Target, seed: u64, mut budget: impl FnMut(u64) -> bool) -> Run {
    let mut corpus: Vec<Vec<u8>> = inputs("corpus", target.name)
        .into_iter()
        .chain(inputs("regressions", target.name))
        .map(|(_, bytes)| bytes)
        .chain((target.seeds)())
        .collect();
    if corpus.is_empty() {
        corpus.push(Vec::new());
    }
    let mut rng = mutate::Rng::new(seed);
    let mut executions = 0;
    let check = |input: Vec<u8>, executions: &mut u64| -> Option<(Vec<u8>, String)> {
        *executions += 1;
        let run = target.run;
        match std::panic::catch_unwind(|| run(&input)) {
            Ok(()) => None,
            Err(payload) => Some((input, panic_message(payload.as_ref()))),
        }
    };
    for input in corpus.clone() {
        if let Some(failure) = check(input, &mut executions) {
            return Run {
                executions,
                failure: Some(failure),
            };
        }
    }
    while budget(executions) {
        let base = &corpus[rng.below(corpus.len())];
        let other = &corpus[rng.below(corpus.len())];
        let input = mutate::mutate(&mut rng, base, other, target.dictionary);
        if let Some(failure) = check(input, &mut executions) {
            return Run {
                executions,
                failure: Some(failure),
            };
        }
    }
    Run {
        executions,
        failure: None,
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "panic".to_owned())
}
