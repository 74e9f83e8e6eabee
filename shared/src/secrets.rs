//! Secrets that must not reach production: outside `PLATFORM_ENV=dev`, a
//! service refuses to start with a secret whose value is the one printed in
//! `.env.example` (which the README's examples use too), including the
//! password inside a connection URL. The example values are read from that
//! file at compile time, so the list cannot drift from what is published.

/// Variables holding secrets (the whole value, or the password in a URL).
const SECRET_VARS: &[&str] = &[
    "DATABASE_URL",
    "AMQP_URL",
    "REDIS_URL",
    "S3_SECRET_ACCESS_KEY",
    "PURGE_TOKEN",
    "ADMIN_API_KEY",
    "PLAYBACK_SIGNING_KEYS",
    "CONTENT_MASTER_KEYS",
];

const ENV_EXAMPLE: &str = include_str!("../../.env.example");

/// The example value of `name`, commented out or not.
fn example(name: &str) -> Option<&'static str> {
    ENV_EXAMPLE.lines().find_map(|l| l.trim_start_matches(['#', ' ']).strip_prefix(name)?.strip_prefix('=').map(str::trim))
}

/// The password of `scheme://user:password@host…`, if any.
fn url_password(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let userinfo = rest.split_once('@')?.0;
    userinfo.split_once(':').map(|(_, p)| p).filter(|p| !p.is_empty())
}

/// Why `value` of `name` is refused outside dev, if it is.
pub fn refused(name: &str, value: &str) -> Option<String> {
    if !SECRET_VARS.contains(&name) {
        return None;
    }
    let example = example(name)?;
    if value.trim() == example {
        return Some(format!("{name} is the example value from .env.example; set a secret of this deployment's own (PLATFORM_ENV=dev allows it)"));
    }
    match (url_password(value), url_password(example)) {
        (Some(p), Some(e)) if p == e => Some(format!("{name} uses the example password from .env.example; set one of this deployment's own")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_secrets_and_passwords_are_refused_and_others_pass() {
        assert!(refused("PURGE_TOKEN", example("PURGE_TOKEN").unwrap()).is_some());
        assert!(refused("PURGE_TOKEN", "a-real-long-random-token").is_none());
        assert!(refused("AMQP_URL", "amqp://guest:guest@rabbit.internal:5672/%2f").is_some(), "the example's password on another host");
        assert!(refused("AMQP_URL", "amqp://video:Zq8…@rabbit:5672/%2f").is_none());
        assert!(refused("S3_BUCKET", "videos").is_none(), "not a secret");
        assert_eq!(url_password("redis://:pw@h:6379"), Some("pw"));
        assert_eq!(url_password("postgres://postgres@h/db"), None);
    }
}
