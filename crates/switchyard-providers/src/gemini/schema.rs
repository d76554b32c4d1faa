//! OpenAI function tools written as Gemini function declarations, their JSON
//! schemas cut down to the `Schema` object Gemini accepts in `parameters`.

use serde_json::{Map, Value};

use super::request::drop_field;
use super::types::{FunctionDeclaration, GeminiTool};
use crate::openai::InvalidRequest;
use crate::openai::chat::Tool;

/// The keywords of Gemini's `Schema` object; every other keyword (`$schema`,
/// `$id`, `additionalProperties`, `strict`, `const`, `exclusiveMinimum`, …) is
/// left out, since Gemini refuses a declaration that has one.
const KEPT: &[&str] = &[
    "type",
    "format",
    "title",
    "description",
    "nullable",
    "enum",
    "maxItems",
    "minItems",
    "properties",
    "required",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "example",
    "anyOf",
    "propertyOrdering",
    "default",
    "items",
    "minimum",
    "maximum",
];

/// How deep `$ref`s may nest before the schema counts as recursive.
const MAX_REF_DEPTH: usize = 8;

/// The most schema objects one tool's parameters may have once their `$ref`s
/// are inlined: a few nested references can otherwise multiply a small
/// request into billions of objects.
const MAX_SCHEMA_NODES: usize = 10_000;

/// `tools` as one Gemini tool holding every function declaration.
pub(super) fn declarations(
    tools: &[Tool],
    dropped: &mut Vec<String>,
) -> Result<Vec<GeminiTool>, InvalidRequest> {
    let mut function_declarations = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        if tool.kind != "function" {
            return Err(InvalidRequest::new(
                &format!("tools[{i}].type"),
                format!(
                    "tools of type `{}` are not supported for Gemini models",
                    tool.kind
                ),
            ));
        }
        let function = &tool.function;
        if function.strict == Some(true) {
            drop_field(dropped, "tools.function.strict");
        }
        let parameters = match &function.parameters {
            Some(schema) => {
                let mut budget = MAX_SCHEMA_NODES;
                clean(schema, schema, 0, &mut budget).map_err(|e| {
                    InvalidRequest::new(&format!("tools[{i}].function.parameters"), e)
                })?
            }
            None => None,
        };
        function_declarations.push(FunctionDeclaration {
            name: function.name.clone(),
            description: function.description.clone(),
            parameters: parameters.filter(|p| !no_properties(p)),
        });
    }
    if function_declarations.is_empty() {
        return Ok(Vec::new());
    }
    Ok(vec![GeminiTool {
        function_declarations,
    }])
}

/// An object schema without properties: Gemini refuses it as `parameters`,
/// and leaving it out means the same (the function takes no arguments).
fn no_properties(schema: &Value) -> bool {
    schema.get("type").and_then(Value::as_str) == Some("object")
        && schema
            .get("properties")
            .and_then(Value::as_object)
            .is_none_or(Map::is_empty)
}

/// `schema` with local `$ref`s inlined, `oneOf` read as `anyOf`, a `type`
/// list with `null` read as `nullable`, and only [`KEPT`] keywords; `None`
/// when it is not a schema object (`true`, say).
/// Each object written takes one from `budget`; an empty budget is an error.
fn clean(
    schema: &Value,
    root: &Value,
    depth: usize,
    budget: &mut usize,
) -> Result<Option<Value>, String> {
    let Some(object) = schema.as_object() else {
        return Ok(None);
    };
    *budget = budget.checked_sub(1).ok_or_else(|| {
        format!("the schema has more than {MAX_SCHEMA_NODES} objects once its `$ref`s are inlined")
    })?;
    if let Some(reference) = object.get("$ref").and_then(Value::as_str) {
        if depth >= MAX_REF_DEPTH {
            return Err(format!(
                "`$ref` {reference} nests too deep (recursive schemas are not supported for Gemini models)"
            ));
        }
        let target = resolve(reference, root).ok_or_else(|| {
            format!("`$ref` {reference} does not point into $defs or definitions")
        })?;
        return clean(target, root, depth + 1, budget);
    }
    let mut out = Map::new();
    for (key, value) in object {
        let key = if key == "oneOf" {
            "anyOf"
        } else {
            key.as_str()
        };
        if !KEPT.contains(&key) {
            continue;
        }
        let value = match key {
            "properties" => Value::Object(properties(value, root, depth, budget)?),
            "items" => match clean(value, root, depth, budget)? {
                Some(items) => items,
                None => continue,
            },
            "anyOf" => Value::Array(
                value
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|s| clean(s, root, depth, budget))
                    .filter_map(Result::transpose)
                    .collect::<Result<_, _>>()?,
            ),
            "type" => match nullable_type(value) {
                Some(single) => {
                    out.insert("nullable".to_owned(), Value::Bool(true));
                    single
                }
                None => value.clone(),
            },
            _ => value.clone(),
        };
        out.insert(key.to_owned(), value);
    }
    Ok(Some(Value::Object(out)))
}

fn properties(
    value: &Value,
    root: &Value,
    depth: usize,
    budget: &mut usize,
) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    for (name, schema) in value.as_object().into_iter().flatten() {
        if let Some(schema) = clean(schema, root, depth, budget)? {
            out.insert(name.clone(), schema);
        }
    }
    Ok(out)
}

/// `X` of `"type": [X, "null"]`.
fn nullable_type(value: &Value) -> Option<Value> {
    let types = value.as_array()?;
    let mut non_null = types.iter().filter(|t| t.as_str() != Some("null"));
    let single = non_null.next()?;
    (non_null.next().is_none() && types.len() == 2).then(|| single.clone())
}

/// The schema a local `#/$defs/Name` or `#/definitions/Name` reference names.
fn resolve<'a>(reference: &str, root: &'a Value) -> Option<&'a Value> {
    let path = reference.strip_prefix("#/")?;
    let (section, name) = path.split_once('/')?;
    if section != "$defs" && section != "definitions" {
        return None;
    }
    root.get(section)?.get(name)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn keeps_gemini_keywords_and_inlines_refs() {
        let schema = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "additionalProperties": {"type": ["string", "null"], "const": "x"},
                "place": {"$ref": "#/$defs/Place"},
                "tags": {"type": "array", "items": {"oneOf": [{"type": "string"}, {"type": "integer"}]}}
            },
            "required": ["place"],
            "$defs": {"Place": {"type": "object", "properties": {"city": {"type": "string", "exclusiveMinimum": 1}}}}
        });
        let cleaned = clean(&schema, &schema, 0, &mut 100).unwrap().unwrap();
        assert_eq!(
            cleaned,
            json!({
                "type": "object",
                "properties": {
                    "additionalProperties": {"type": "string", "nullable": true},
                    "place": {"type": "object", "properties": {"city": {"type": "string"}}},
                    "tags": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}}
                },
                "required": ["place"]
            })
        );
    }

    #[test]
    fn refuses_recursive_and_foreign_refs() {
        let recursive =
            json!({"$ref": "#/$defs/Node", "$defs": {"Node": {"$ref": "#/$defs/Node"}}});
        assert!(clean(&recursive, &recursive, 0, &mut 100).is_err());
        let foreign = json!({"$ref": "https://example.com/schema.json"});
        assert!(clean(&foreign, &foreign, 0, &mut 100).is_err());
    }

    #[test]
    fn refuses_refs_that_multiply_the_schema() {
        // Six levels of ten references each would inline 10^6 objects.
        let mut defs = serde_json::Map::new();
        for level in 0..6 {
            let properties: serde_json::Map<String, Value> = (0..10)
                .map(|i| {
                    (
                        format!("p{i}"),
                        json!({"$ref": format!("#/$defs/d{}", level + 1)}),
                    )
                })
                .collect();
            defs.insert(
                format!("d{level}"),
                json!({"type": "object", "properties": properties}),
            );
        }
        defs.insert("d6".to_owned(), json!({"type": "string"}));
        let schema = json!({"$ref": "#/$defs/d0", "$defs": defs});
        let mut budget = MAX_SCHEMA_NODES;
        let error = clean(&schema, &schema, 0, &mut budget).unwrap_err();
        assert!(error.contains("more than 10000 objects"), "{error}");
    }
}
