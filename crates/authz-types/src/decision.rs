//! The outcome of authorization: allow or deny, with a stable reason.

use serde::{Deserialize, Serialize};

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    Allow,
    Deny,
}

impl Effect {
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Allow => "allow",
            Effect::Deny => "deny",
        }
    }

    pub fn parse(s: &str) -> Option<Effect> {
        match s {
            "allow" => Some(Effect::Allow),
            "deny" => Some(Effect::Deny),
            _ => None,
        }
    }
}

/// The effect a policy rule has when it matches: allow, deny, or allow once a person approved
/// the exact call ([`RuleEffect::Approve`]). Decisions stay [`Effect`]s: a call that needs an
/// approval it does not have is denied ([`ReasonCode::ApprovalRequired`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleEffect {
    Allow,
    Deny,
    /// The call is held until an approver approves it; deny still overrides it, and it
    /// overrides allow.
    Approve,
}

impl RuleEffect {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleEffect::Allow => "allow",
            RuleEffect::Deny => "deny",
            RuleEffect::Approve => "approve",
        }
    }

    pub fn parse(s: &str) -> Option<RuleEffect> {
        match s {
            "allow" => Some(RuleEffect::Allow),
            "deny" => Some(RuleEffect::Deny),
            "approve" => Some(RuleEffect::Approve),
            _ => None,
        }
    }
}

macro_rules! reason_codes {
    ($($(#[$doc:meta])* $variant:ident => $code:literal,)*) => {
        /// A stable, machine-readable reason for a decision. These strings are an API: clients,
        /// dashboards and audit queries match on them, so they never change meaning.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum ReasonCode {
            $($(#[$doc])* $variant,)*
        }

        impl ReasonCode {
            /// Every reason code, for documentation and exhaustive tests.
            pub const ALL: &'static [ReasonCode] = &[$(ReasonCode::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(ReasonCode::$variant => $code,)*
                }
            }

            pub fn parse(s: &str) -> Option<ReasonCode> {
                match s {
                    $($code => Some(ReasonCode::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

reason_codes! {
    /// An allow rule matched and no deny rule did.
    PolicyAllow => "policy_allow",
    /// Protocol plumbing (initialize, ping, lists, notifications) for an authenticated caller.
    ProtocolMethod => "protocol_method",
    /// No rule matched: default deny.
    NoMatchingRule => "no_matching_rule",
    /// A deny rule matched (deny overrides allow).
    ExplicitDeny => "explicit_deny",
    /// An allow rule matched but its condition did not hold for this call (or could not be
    /// decided, which never allows): the record names the rule and how its condition came out.
    ConditionNotMet => "condition_not_met",
    /// The method is unknown to the gateway.
    UnknownMethod => "unknown_method",
    /// The token lacks a scope the operation requires.
    InsufficientScope => "insufficient_scope",
    /// No bearer token in the `Authorization` header.
    TokenMissing => "token_missing",
    /// A token was sent outside the `Authorization` header (e.g. `?access_token=`).
    TokenNotInHeader => "token_not_in_header",
    /// The token is not a well-formed JWS compact serialization.
    TokenMalformed => "token_malformed",
    /// The token's signature does not verify.
    TokenBadSignature => "token_bad_signature",
    /// The token's algorithm is not allowed (including `none`).
    TokenAlgorithmNotAllowed => "token_algorithm_not_allowed",
    /// The token names a key the gateway does not know.
    TokenUnknownKey => "token_unknown_key",
    /// `exp` has passed.
    TokenExpired => "token_expired",
    /// `nbf` is in the future.
    TokenNotYetValid => "token_not_yet_valid",
    /// `iss` is not a trusted issuer.
    TokenWrongIssuer => "token_wrong_issuer",
    /// `aud` does not name this resource.
    TokenWrongAudience => "token_wrong_audience",
    /// A required claim is missing or has the wrong type.
    TokenInvalidClaims => "token_invalid_claims",
    /// The token was revoked.
    TokenRevoked => "token_revoked",
    /// The token lives longer than the configured maximum lifetime.
    TokenLifetimeTooLong => "token_lifetime_too_long",
    /// The request body is not one valid JSON-RPC message.
    MalformedRequest => "malformed_request",
    /// The session id belongs to another principal.
    SessionMismatch => "session_mismatch",
    /// The task id is not one the caller created (or is unknown).
    TaskNotOwned => "task_not_owned",
    /// A size or count limit was exceeded (body, headers).
    LimitExceeded => "limit_exceeded",
    /// The principal has too many requests in flight.
    TooManyRequests => "too_many_requests",
    /// A client address caused more unauthenticated refusals than its rate allows (429).
    ClientRateLimited => "client_rate_limited",
    /// The call is over a rate limit or quota (`policy.quotas_file`) (429).
    QuotaExceeded => "quota_exceeded",
    /// A multi round-trip retry whose `requestState` is not a valid envelope for this caller,
    /// route, method and target (missing seal, tampered, expired or someone else's).
    RequestStateInvalid => "request_state_invalid",
    /// The upstream asked the client for input (sampling, elicitation, roots, or a URL on an
    /// origin) that the route's `input_requests` rules do not allow; the call failed.
    InputRequestForbidden => "input_request_forbidden",
    /// The tool's (or prompt's) definition changed upstream since it was pinned, or was never
    /// approved under strict pinning; the call waits for an operator's approval.
    DefinitionUnapproved => "definition_unapproved",
    /// A pinned definition was approved: trusted on first use, approved by an operator, or
    /// served again as approved after a pending change (the record of a pin step).
    DefinitionApproved => "definition_approved",
    /// An `approve` rule matched (and no deny rule did): the call is held until an approver
    /// approves this exact call (principal, tool, arguments); the record of the held call and
    /// of the pending approval it created.
    ApprovalRequired => "approval_required",
    /// The call was let through on an approval: the approver's yes, bound to this principal,
    /// tool and argument digest, used once (the record names the approval).
    ApprovalGranted => "approval_granted",
    /// An approver rejected the call (the record of the rejection, and of a retry it refused).
    ApprovalRejected => "approval_rejected",
    /// Someone tried to decide an approval they may not: without an approver role, in another
    /// tenant, or their own call.
    ApproverRefused => "approver_refused",
    /// A stdio upstream's process started for a session (the record of the start).
    ProcessStarted => "process_started",
    /// A stdio upstream's process ended: exited, crashed, idle, or ended with its session.
    ProcessExited => "process_exited",
}

impl ReasonCode {
    /// What the policy made of a request decided for this reason — `allow`, `deny` or `held`
    /// (for an approver) — or `None` when the policy did not decide it (protocol plumbing, a
    /// token, a scope, a quota, a pin). Replay and shadow mode compare policies by it.
    pub fn policy_outcome(self) -> Option<&'static str> {
        Some(match self {
            ReasonCode::PolicyAllow => "allow",
            ReasonCode::ExplicitDeny | ReasonCode::NoMatchingRule | ReasonCode::ConditionNotMet => {
                "deny"
            }
            ReasonCode::ApprovalRequired | ReasonCode::ApprovalGranted => "held",
            _ => return None,
        })
    }
}

impl std::fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An authorization decision. A denial is a value, not an error: an `Err` from a decider means
/// it could not decide, and callers then fail closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub effect: Effect,
    pub reason: ReasonCode,
    /// The policy rule that decided, in the store's own notation (e.g. `p, reader, default,
    /// tool:tickets/get_*, call, allow`), if a rule decided.
    pub matched_rule: Option<String>,
    /// The policy revision the decision was made under.
    pub policy_revision: i64,
}

impl Decision {
    pub fn allow(reason: ReasonCode, matched_rule: Option<String>, policy_revision: i64) -> Self {
        Self {
            effect: Effect::Allow,
            reason,
            matched_rule,
            policy_revision,
        }
    }

    pub fn deny(reason: ReasonCode, matched_rule: Option<String>, policy_revision: i64) -> Self {
        Self {
            effect: Effect::Deny,
            reason,
            matched_rule,
            policy_revision,
        }
    }

    pub fn is_allowed(&self) -> bool {
        self.effect == Effect::Allow
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_codes_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for code in ReasonCode::ALL {
            assert!(seen.insert(code.as_str()), "duplicate code {code}");
            assert_eq!(ReasonCode::parse(code.as_str()), Some(*code));
            let json = serde_json::to_string(code).expect("serialize");
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
        assert_eq!(ReasonCode::parse("nope"), None);
    }
}
