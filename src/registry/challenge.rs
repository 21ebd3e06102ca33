//! The pieces of the distribution API's answers that say why: the error body
//! (`{"errors":[{"code","message"}]}`) and the challenges of `WWW-Authenticate`.

use reqwest::StatusCode;

/// The first error of the distribution spec's error body
/// (`{"errors":[{"code","message"}]}`): its code, and its message or none.
pub fn first_error(body: &str) -> Option<(String, String)> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    let first = value.get("errors")?.get(0)?;
    let message = first.get("message").and_then(|m| m.as_str());
    Some((
        first.get("code")?.as_str()?.to_owned(),
        message.unwrap_or_default().to_owned(),
    ))
}

/// The error body as `CODE: message`, else the status's reason.
pub fn detail(status: StatusCode, body: &str) -> String {
    match first_error(body) {
        Some((code, message)) => format!("{code}: {message}"),
        None => status.canonical_reason().unwrap_or("").to_owned(),
    }
}

/// The challenges of one `WWW-Authenticate` value (RFC 9110 §11.6.1): each a scheme,
/// lowercased, and its `name=value` parameters, values unquoted. A value may hold several
/// (`Bearer realm="…",service="…", Basic realm="…"`): a word not followed by `=` starts
/// the next.
pub fn challenges(value: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut found: Vec<(String, Vec<(String, String)>)> = Vec::new();
    let mut rest = value.trim_start();
    while !rest.is_empty() {
        let end = rest
            .find(|c: char| c == '=' || c == ',' || c.is_whitespace())
            .unwrap_or(rest.len());
        let word = &rest[..end];
        let after = rest[end..].trim_start();
        if let Some(value_text) = after.strip_prefix('=').filter(|_| !found.is_empty()) {
            let value_text = value_text.trim_start();
            let (value, remaining) = match value_text.strip_prefix('"') {
                Some(quoted) => {
                    let mut value = String::new();
                    let mut chars = quoted.char_indices();
                    let mut close = quoted.len();
                    while let Some((i, c)) = chars.next() {
                        match c {
                            '\\' => {
                                if let Some((_, escaped)) = chars.next() {
                                    value.push(escaped);
                                }
                            }
                            '"' => {
                                close = i + 1;
                                break;
                            }
                            _ => value.push(c),
                        }
                    }
                    (value, &quoted[close..])
                }
                None => {
                    let end = value_text.find(',').unwrap_or(value_text.len());
                    (value_text[..end].trim_end().to_owned(), &value_text[end..])
                }
            };
            if let Some((_, params)) = found.last_mut() {
                params.push((word.to_owned(), value));
            }
            rest = remaining;
        } else if word.is_empty() {
            // A stray comma or `=`: skipped.
            rest = &after[after.chars().next().map_or(0, char::len_utf8)..];
        } else {
            found.push((word.to_ascii_lowercase(), Vec::new()));
            rest = after;
        }
        rest = rest.trim_start_matches(|c: char| c == ',' || c.is_whitespace());
    }
    found
}

#[cfg(test)]
mod tests {
    use super::challenges;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn a_bearer_challenge_gives_realm_service_and_scope() {
        assert_eq!(
            challenges(
                r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:team/app:pull,push""#
            ),
            [(
                "bearer".to_owned(),
                pairs(&[
                    ("realm", "https://auth.example/token"),
                    ("service", "registry.example"),
                    ("scope", "repository:team/app:pull,push"),
                ])
            )]
        );
    }

    #[test]
    fn several_challenges_in_one_value_are_told_apart() {
        assert_eq!(
            challenges(
                r#"Bearer realm="https://a/t", error="invalid_token", Basic realm="x \"y\"",charset=UTF-8"#
            ),
            [
                (
                    "bearer".to_owned(),
                    pairs(&[("realm", "https://a/t"), ("error", "invalid_token")])
                ),
                (
                    "basic".to_owned(),
                    pairs(&[("realm", "x \"y\""), ("charset", "UTF-8")])
                ),
            ]
        );
        assert_eq!(challenges("Basic"), [("basic".to_owned(), Vec::new())]);
        assert!(challenges(" , =").is_empty());
    }
}
