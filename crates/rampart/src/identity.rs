//! Who a request comes from, once verified: the [`Principal`] an authenticator establishes and
//! the [`Role`] it holds. Shared by the access policy ([`crate::policy`]), which decides on
//! it, and the client rate limit ([`crate::limit::ClientLimitLayer`]), which charges by it.
//!
//! Defends against confused identity: a principal carries ids only (no name, no email), and a
//! role parses from exactly `"user"` or `"admin"`.

/// What a caller may do beyond its own resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Admin,
}

/// Only the strings `"user"` and `"admin"`. serde's derived form would also take an enum's map
/// form (`{"admin": null}`), a shape no client is told of and no schema check expects.
impl<'de> serde::Deserialize<'de> for Role {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        match name.as_str() {
            "user" => Ok(Self::User),
            "admin" => Ok(Self::Admin),
            _ => Err(serde::de::Error::unknown_variant(&name, &["user", "admin"])),
        }
    }
}

/// The verified caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user_id: String,
    pub session_id: String,
    pub role: Role,
}
