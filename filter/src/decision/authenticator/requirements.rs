//! The requirement tree (what Envoy's `jwt_authn` calls the verifier): the tokens a rule
//! needs, combined with `any` and `all`. Each provider requirement is checked by the token
//! pipeline (`token.rs`); here outcomes are only combined.

use super::NeedKeys;
use super::token::Passed;
use crate::config::ProviderId;
use crate::policy::authz::{ProviderRequirement, Requirement};
use crate::policy::response::Failure;

/// What checking a requirement came to.
pub(super) enum Outcome<'r> {
    /// Passed; empty when it passed anonymously (`allow_missing`).
    Pass(Vec<Passed<'r>>),
    Fail(Failure, Option<ProviderId>),
    /// Keys are needed first.
    Pending(NeedKeys),
}

/// Checks one provider requirement, with what the rule's path template captured.
pub(super) type Check<'c, 'r> = dyn Fn(&ProviderRequirement, &[String]) -> Outcome<'r> + 'c;

/// `requirement`, with the captures of its rule. `any` passes with the first that passes
/// with a token (anonymously if one passed without); otherwise it waits for keys if one
/// does, and else fails as the one that got furthest.
pub(super) fn evaluate<'r>(
    requirement: &Requirement,
    captures: &[String],
    check: &Check<'_, 'r>,
) -> Outcome<'r> {
    match requirement {
        Requirement::Provider(p) => check(p, captures),
        Requirement::Any(list) => {
            let (mut anonymous, mut pending, mut worst) =
                (false, None, None::<(Failure, Option<ProviderId>)>);
            for r in list {
                match evaluate(r, captures, check) {
                    Outcome::Pass(v) if !v.is_empty() => return Outcome::Pass(v),
                    Outcome::Pass(_) => anonymous = true,
                    Outcome::Pending(need) => {
                        pending.get_or_insert(need);
                    }
                    Outcome::Fail(f, p) => {
                        if worst.as_ref().is_none_or(|(w, _)| f.rank() > w.rank()) {
                            worst = Some((f, p));
                        }
                    }
                }
            }
            if anonymous {
                Outcome::Pass(Vec::new())
            } else if let Some(need) = pending {
                Outcome::Pending(need)
            } else {
                let (f, p) = worst.unwrap_or((Failure::AccessDenied, None));
                Outcome::Fail(f, p)
            }
        }
        Requirement::All(list) => evaluate_all(list.iter().map(|r| Ok((r, captures))), check),
    }
}

/// Every check (a requirement with its rule's captures) must pass (an `Err` is a failure
/// already decided); the first failure decides; a pending one waits for keys unless a
/// later one fails.
pub(super) fn evaluate_all<'q, 'r>(
    checks: impl IntoIterator<Item = Result<(&'q Requirement, &'q [String]), Failure>>,
    check: &Check<'_, 'r>,
) -> Outcome<'r> {
    let (mut passed, mut pending): (Vec<Passed>, _) = (Vec::new(), None);
    for item in checks {
        let (requirement, captures) = match item {
            Ok(item) => item,
            Err(failure) => return Outcome::Fail(failure, None),
        };
        match evaluate(requirement, captures, check) {
            Outcome::Pass(v) => {
                for p in v {
                    // One token that passed two checks changes the headers once.
                    if !passed
                        .iter()
                        .any(|q| q.provider == p.provider && q.source == p.source)
                    {
                        passed.push(p);
                    }
                }
            }
            fail @ Outcome::Fail(..) => return fail,
            Outcome::Pending(need) => {
                pending.get_or_insert(need);
            }
        }
    }
    match pending {
        Some(need) => Outcome::Pending(need),
        None => Outcome::Pass(passed),
    }
}
