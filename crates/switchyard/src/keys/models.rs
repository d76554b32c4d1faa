//! Which models a key (or a team) may use: a list of name globs.
//!
//! A glob matches a whole model name; `*` stands for any run of characters and
//! `?` for one. An empty list allows every model. (Model names are short and
//! the lists shorter, so a plain backtracking match does; no regex engine.)

/// Allowed model name globs; empty allows every model.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedModels(Box<[Box<str>]>);

impl AllowedModels {
    /// From the stored globs.
    pub fn new(globs: &[String]) -> Self {
        Self(globs.iter().map(|g| Box::from(g.as_str())).collect())
    }

    /// Whether `model` is allowed.
    pub fn allows(&self, model: &str) -> bool {
        self.0.is_empty() || self.0.iter().any(|glob| matches(glob, model))
    }

    /// Whether every model is allowed.
    pub fn is_all(&self) -> bool {
        self.0.is_empty()
    }
}

/// Whether `glob` matches the whole of `name`.
fn matches(glob: &str, name: &str) -> bool {
    let (glob, name) = (glob.as_bytes(), name.as_bytes());
    let (mut g, mut n) = (0, 0);
    // Where the last `*` was, and the name position it is tried from.
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match glob.get(g) {
            Some(b'*') => {
                star = Some((g, n));
                g += 1;
            }
            Some(&c) if c == b'?' || c == name[n] => {
                g += 1;
                n += 1;
            }
            _ => match star {
                Some((at, from)) => {
                    g = at + 1;
                    n = from + 1;
                    star = Some((at, from + 1));
                }
                None => return false,
            },
        }
    }
    glob[g..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_whole_names() {
        for (glob, name, expected) in [
            ("gpt-4.1", "gpt-4.1", true),
            ("gpt-4.1", "gpt-4.1-mini", false),
            ("gpt-*", "gpt-4.1-mini", true),
            ("gpt-*", "gpt-", true),
            ("gpt-*", "claude", false),
            ("*-mini", "gpt-4.1-mini", true),
            ("*", "", true),
            ("", "x", false),
            ("gpt-?.1", "gpt-4.1", true),
            ("gpt-?.1", "gpt-40.1", false),
            ("*a*b*c", "xxaxxbxxc", true),
            ("*a*b*c", "xxaxxcxxb", false),
            ("**", "anything", true),
            ("claude-*-4*", "claude-sonnet-4.5", true),
        ] {
            assert_eq!(matches(glob, name), expected, "{glob} ~ {name}");
        }
    }

    #[test]
    fn an_empty_list_allows_every_model() {
        assert!(AllowedModels::default().allows("anything"));
        let some = AllowedModels::new(&["gpt-*".into(), "mock".into()]);
        assert!(some.allows("mock") && some.allows("gpt-4o") && !some.allows("claude"));
    }
}
