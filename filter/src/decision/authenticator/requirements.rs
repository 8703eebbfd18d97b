//! The requirement tree (what Envoy's `jwt_authn` calls the verifier): the tokens a rule
//! needs, combined with `any` and `all`. Each provider requirement is checked by the token
//! pipeline (`token.rs`); here its results are only combined.

use super::token::Passed;
use crate::decision::outcome::{Refusal, Stop};
use crate::policy::authz::{ProviderRequirement, Requirement};
use crate::policy::response::Failure;

/// What checking a requirement came to: the tokens it passed with (none when it passed
/// anonymously, `allow_missing`), or why it stopped.
pub(super) type Checked<'r> = Result<Vec<Passed<'r>>, Stop>;

/// Checks one provider requirement, with what the rule's path template captured: `None`
/// when it passed without a token.
pub(super) type Check<'c, 'r> =
    dyn Fn(&ProviderRequirement, &[String]) -> Result<Option<Passed<'r>>, Stop> + 'c;

/// `requirement`, with the captures of its rule. `any` passes with the first that passes
/// with a token (anonymously if one passed without); otherwise it waits for keys if one
/// does (or for an introspection answer), and else is refused as the one that got furthest.
pub(super) fn evaluate<'r>(
    requirement: &Requirement,
    captures: &[String],
    check: &Check<'_, 'r>,
) -> Checked<'r> {
    match requirement {
        Requirement::Provider(p) => check(p, captures).map(|passed| match passed {
            Some(passed) => vec![passed],
            None => Vec::new(),
        }),
        Requirement::Any(list) => {
            let (mut anonymous, mut pending, mut worst) = (false, None, None::<Refusal>);
            for r in list {
                match evaluate(r, captures, check) {
                    Ok(v) if !v.is_empty() => return Ok(v),
                    Ok(_) => anonymous = true,
                    Err(Stop::Refuse(refusal)) => {
                        let weight = |r: &Refusal| (!r.foreign, r.failure.rank());
                        if worst.as_ref().is_none_or(|w| weight(&refusal) > weight(w)) {
                            worst = Some(refusal);
                        }
                    }
                    Err(need) => {
                        pending.get_or_insert(need);
                    }
                }
            }
            if anonymous {
                Ok(Vec::new())
            } else if let Some(need) = pending {
                Err(need)
            } else {
                Err(match worst {
                    Some(refusal) => Stop::Refuse(refusal),
                    None => Stop::refuse(Failure::AccessDenied, None),
                })
            }
        }
        Requirement::All(list) => evaluate_all(list.iter().map(|r| Ok((r, captures))), check),
    }
}

/// Every check (a requirement with its rule's captures) must pass (an `Err` is a failure
/// already decided); the first refusal decides; a pending one waits for keys (or an
/// introspection answer) unless a later one is refused.
pub(super) fn evaluate_all<'q, 'r>(
    checks: impl IntoIterator<Item = Result<(&'q Requirement, &'q [String]), Failure>>,
    check: &Check<'_, 'r>,
) -> Checked<'r> {
    let (mut passed, mut pending): (Vec<Passed>, _) = (Vec::new(), None);
    for item in checks {
        let (requirement, captures) = item.map_err(|failure| Stop::refuse(failure, None))?;
        match evaluate(requirement, captures, check) {
            Ok(v) => {
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
            refused @ Err(Stop::Refuse(_)) => return refused,
            Err(need) => {
                pending.get_or_insert(need);
            }
        }
    }
    match pending {
        Some(need) => Err(need),
        None => Ok(passed),
    }
}
