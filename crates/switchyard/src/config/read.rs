//! From YAML text to a file's typed shape, gathering every problem on the
//! way: a faulty node is reported with its place and removed, and reading
//! goes on. The configuration and the price list (`crate::pricing`) are both
//! read this way.

use std::collections::HashMap;

use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;

use super::problems::{Problem, unknown};
use super::tree::{Node, Place, Step, TreeError};

/// More problems than this in one file are not worth listing.
const MAX_PROBLEMS: usize = 100;

/// A file read into the shape `T`.
pub(crate) struct Read<T> {
    /// The shape, unless the faults left nothing to read it from.
    pub value: Option<T>,
    /// The document, less the faulty nodes.
    pub tree: Node,
    /// The paths of the nodes removed for their faults.
    pub removed: Vec<Vec<Step>>,
    /// The faults, each with its place.
    pub problems: Vec<Problem>,
}

/// Parses `text` (`env` resolves `${VAR}`) and reads it into `T`.
/// `Err`: the text is not YAML.
pub(crate) fn read<T: DeserializeOwned>(
    text: &str,
    env: HashMap<String, String>,
) -> Result<Read<T>, Problem> {
    let mut tree = match Node::parse(text, env) {
        Ok(tree) => tree,
        Err(e) => {
            let place = e.location().map(|l| Place {
                line: l.line(),
                column: l.column(),
            });
            let message = e.without_snippet().to_string();
            return Err(Problem::at(place, first_line(&message)));
        }
    };
    let mut problems = Vec::new();
    let mut removed = Vec::new();
    let value = loop {
        match serde_path_to_error::deserialize::<_, T>(&tree) {
            Ok(value) => break Some(value),
            Err(err) => {
                let path: Vec<Step> = err
                    .path()
                    .iter()
                    .filter_map(|segment| match segment {
                        Segment::Map { key } => Some(Step::Key(key.clone())),
                        Segment::Seq { index } => Some(Step::Index(*index)),
                        _ => None,
                    })
                    .collect();
                let (message, mut path) = describe(err.into_inner(), path);
                let place = tree.find(&path).map(|(_, place)| place);
                problems.push(Problem::at(place, message));
                // Remove the faulty node (for a missing key, the node that lacks it) and go on.
                while !path.is_empty() && !tree.remove(&path) {
                    path.pop();
                }
                if path.is_empty() || problems.len() >= MAX_PROBLEMS {
                    break None;
                }
                removed.push(path);
            }
        }
    };
    Ok(Read {
        value,
        tree,
        removed,
        problems,
    })
}

fn first_line(message: &str) -> String {
    message.lines().next().unwrap_or(message).trim().to_owned()
}

/// The message for a deserialization error, and the path of the node to blame.
fn describe(error: TreeError, mut path: Vec<Step>) -> (String, Vec<Step>) {
    let message = match error {
        TreeError::UnknownField { field, expected } => {
            if path.last() != Some(&Step::Key(field.clone())) {
                path.push(Step::Key(field.clone()));
            }
            unknown("key", &field, expected)
        }
        TreeError::UnknownVariant { variant, expected } => {
            let name = match path.last() {
                Some(Step::Key(k)) => format!("value for `{k}`"),
                _ => "value".to_owned(),
            };
            unknown(&name, &variant, expected)
        }
        TreeError::MissingField(field) => format!("missing key `{field}`"),
        TreeError::Message(m) => match path.last() {
            Some(Step::Key(k)) => format!("`{k}`: {m}"),
            _ => m,
        },
    };
    (message, path)
}
