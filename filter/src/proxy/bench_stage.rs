//! Benchmark builds only: `JWT_FILTER_BENCH_STAGE` set at build time makes every request
//! stop after one stage and go on upstream, so that `bench/run.py` can measure what each
//! stage costs inside the real host (the differences between variants). Every shipped build
//! leaves it unset, and then every stage runs: `STAGE` is `Everything`, a constant, and the
//! branches on it compile away.

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The filter as shipped.
    Everything,
    /// The stream context is created and the request callback returns at once.
    Context,
    /// Also the host call that reads the time.
    Time,
    /// Also the host calls that read the request (time, headers).
    Request,
    /// Also the decision (token cache, parsing, signature, claims, rules), not acted on.
    Decision,
    /// The decision with every signature refused without asking the verifier: the
    /// decision's cost without the signature call.
    DecisionWithoutSignature,
    /// The request read, then refused with the missing-token answer without deciding:
    /// what a local reply costs.
    Refusal,
}

pub const STAGE: Stage = parse(option_env!("JWT_FILTER_BENCH_STAGE"));

#[allow(clippy::panic)] // at compile time: an unknown stage name is a build error
const fn parse(name: Option<&str>) -> Stage {
    let Some(name) = name else {
        return Stage::Everything;
    };
    match name.as_bytes() {
        b"context" => Stage::Context,
        b"time" => Stage::Time,
        b"request" => Stage::Request,
        b"decision" => Stage::Decision,
        b"decision-without-signature" => Stage::DecisionWithoutSignature,
        b"refusal" => Stage::Refusal,
        _ => panic!("JWT_FILTER_BENCH_STAGE: an unknown stage (see `Stage`)"),
    }
}
