//! Errors shared by every layer: [`TokenError`], why a token was refused, with its stable
//! [`ReasonCode`] and client-safe description, and [`error_chain`] for log lines.

use authz_types::ReasonCode;

/// Why a token was refused. Each variant maps to one [`ReasonCode`].
///
/// The `Display` text is meant for logs and never contains token contents; [`TokenError::description`]
/// is the shorter text to show a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a well-formed JWS compact serialization (size, segments, base64url, JSON, `crit`).
    #[error("token is malformed: {0}")]
    Malformed(&'static str),
    /// The signature does not verify with the key the token names.
    #[error("token signature does not verify")]
    BadSignature,
    /// `alg` is `none`, symmetric, unsupported or not allowed for the issuer.
    #[error("token algorithm is not allowed")]
    AlgorithmNotAllowed,
    /// `kid` is missing, malformed, unknown for the issuer, names a key of another algorithm, or
    /// the issuer's fetched keys are too stale to trust.
    #[error("token names no known key")]
    UnknownKey,
    /// `exp` has passed (beyond the leeway).
    #[error("token has expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("token is not yet valid")]
    NotYetValid,
    /// `iss` is not a configured issuer.
    #[error("token issuer is not trusted")]
    WrongIssuer,
    /// `aud` is missing or does not name the protected resource, or the issuer may not issue
    /// tokens for this resource.
    #[error("token audience does not match this resource")]
    WrongAudience,
    /// A required claim is missing, a claim has the wrong type, value or size, or `typ` is not
    /// `at+jwt` where that is required.
    #[error("token claims are invalid: {0}")]
    InvalidClaims(&'static str),
    /// The token lives longer than the configured maximum.
    #[error("token lifetime exceeds the allowed maximum")]
    LifetimeTooLong,
    /// The token's `jti`, or its subject before the token's `iat`, has been revoked.
    #[error("token has been revoked")]
    Revoked,
}

impl TokenError {
    /// The stable reason code for audit records and error bodies.
    pub fn reason(&self) -> ReasonCode {
        match self {
            TokenError::Malformed(_) => ReasonCode::TokenMalformed,
            TokenError::BadSignature => ReasonCode::TokenBadSignature,
            TokenError::AlgorithmNotAllowed => ReasonCode::TokenAlgorithmNotAllowed,
            TokenError::UnknownKey => ReasonCode::TokenUnknownKey,
            TokenError::Expired => ReasonCode::TokenExpired,
            TokenError::NotYetValid => ReasonCode::TokenNotYetValid,
            TokenError::WrongIssuer => ReasonCode::TokenWrongIssuer,
            TokenError::WrongAudience => ReasonCode::TokenWrongAudience,
            TokenError::InvalidClaims(_) => ReasonCode::TokenInvalidClaims,
            TokenError::LifetimeTooLong => ReasonCode::TokenLifetimeTooLong,
            TokenError::Revoked => ReasonCode::TokenRevoked,
        }
    }

    /// A client-safe description (for `error_description`); never contains token contents.
    pub fn description(&self) -> &'static str {
        match self {
            TokenError::Malformed(_) => "The access token is malformed.",
            TokenError::BadSignature => "The access token signature is invalid.",
            TokenError::AlgorithmNotAllowed => "The access token algorithm is not allowed.",
            TokenError::UnknownKey => "The access token is signed with an unknown key.",
            TokenError::Expired => "The access token has expired.",
            TokenError::NotYetValid => "The access token is not yet valid.",
            TokenError::WrongIssuer => "The access token issuer is not trusted.",
            TokenError::WrongAudience => "The access token is not intended for this resource.",
            TokenError::InvalidClaims(_) => "The access token claims are invalid.",
            TokenError::LifetimeTooLong => "The access token lifetime is too long.",
            TokenError::Revoked => "The access token has been revoked.",
        }
    }
}

/// An error and its sources on one line, for log events (the SQL layer's, shared by every
/// crate).
pub(crate) use authz_db::error_chain;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_its_own_reason_and_a_safe_description() {
        let all = [
            TokenError::Malformed("x"),
            TokenError::BadSignature,
            TokenError::AlgorithmNotAllowed,
            TokenError::UnknownKey,
            TokenError::Expired,
            TokenError::NotYetValid,
            TokenError::WrongIssuer,
            TokenError::WrongAudience,
            TokenError::InvalidClaims("x"),
            TokenError::LifetimeTooLong,
            TokenError::Revoked,
        ];
        let reasons: std::collections::HashSet<_> = all.iter().map(TokenError::reason).collect();
        assert_eq!(reasons.len(), all.len());
        for e in all {
            assert!(e.reason().as_str().starts_with("token_"));
            assert!(!e.description().is_empty());
        }
    }
}
