//! Server-side printing: `kubectl get` asks for its rows as a
//! `meta.k8s.io` `Table` (`Accept: application/json;as=Table;v=v1;
//! g=meta.k8s.io`, falling back to `v1beta1` and plain JSON), and prints
//! the columns the server chose. Without it every kind shows only NAME
//! and AGE.
//!
//! **Negotiation** ([`negotiate()`]; the rules are in
//! [`mod@negotiate`]): the `Accept` header of a get, list or watch picks
//! the object itself, a Table, `PartialObjectMetadata` or
//! `PartialObjectMetadataList`, in kube-apiserver's order and with its
//! 406 answers.
//!
//! **Tables.** A [`Convertor`] turns objects into rows: kube-apiserver's
//! printer for the built-in kinds ([`printers`], keyed by group and kind;
//! kube-apiserver v1.34's columns, descriptions included), tmc's printers
//! for ClusterRegistration and WorkloadPlacement, printer columns
//! (`additionalPrinterColumns`, [`PrinterColumn`], evaluated with the
//! [`jsonpath`] subset) for kcp's kinds as kcp's CRDs define them and for
//! custom resources later, kube's default convertor (NAME, CREATED AT)
//! for the kinds kube-apiserver prints that way (Role, ClusterRole,
//! LimitRange), and NAME, AGE for any other kind. Every row has every
//! column (kube-apiserver's server-side printing is always wide; kubectl
//! hides the columns of priority 1 unless `-o wide`). `includeObject`
//! chooses each row's `object`: `Metadata` (the default) a
//! PartialObjectMetadata, `Object` the whole object, `None` nothing; any
//! other value is 400. A list's `resourceVersion`, `continue` and
//! `remainingItemCount` carry over.
//!
//! **Watches** ([`WatchEncoder`]): each event's object becomes a Table of
//! one row; the first event's Table carries the column definitions and
//! the later ones `null`, as kube-apiserver does (its watch encoder sets
//! `noHeaders` after the first event, whatever that event is). ERROR
//! events keep their Status. A bookmark becomes a row of an empty object
//! (kube-apiserver does the same); one ending the initial events keeps
//! its PartialObjectMetadata even with `includeObject=Object`.
//!
//! Left out: YAML and protobuf bodies (a Table asked as YAML is sent as
//! JSON, like every other tmc answer), Tables for writes (create, update
//! and patch answer the object whatever `Accept` says), the
//! `additionalPrinterColumns` of CustomResourceDefinitions (the
//! convertor is ready: [`Convertor::from_crd`]; CRDs are not served
//! yet), JSONPath beyond [`jsonpath`]'s subset, validation of label
//! selector keys and values in cells (kube-apiserver refuses invalid
//! ones on write; tmc stores built-in kinds schemaless), canonical
//! Quantity formatting (`1024Mi` is printed as written, kube prints
//! `1Gi`), and server-assigned values tmc does not assign (a Service
//! shows no cluster IP unless its spec names one; a Job's selector is
//! `<none>` unless given).

pub mod cells;
pub mod jsonpath;
pub mod negotiate;
pub mod printers;

pub use negotiate::{negotiate, MetaVersion, Output, Read};
pub use printers::for_kind;

use super::resources::ResourceInfo;
use super::status::{ApiError, ApiResult};
use chrono::{DateTime, Utc};
use jsonpath::JsonPath;
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::borrow::Cow;

/// One column of a table (`metav1.TableColumnDefinition`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Column {
    /// Header, as kubectl shows it upper-cased.
    pub name: Cow<'static, str>,
    /// `string`, `integer`, `number`, `boolean` or `date`.
    #[serde(rename = "type")]
    pub type_: Cow<'static, str>,
    /// `name` for the column naming the object, else usually empty.
    pub format: Cow<'static, str>,
    /// What the column shows.
    pub description: Cow<'static, str>,
    /// 0: always shown; 1 and more: only with `-o wide`.
    pub priority: i64,
}

impl Column {
    /// A column with static text.
    pub const fn new(
        name: &'static str,
        type_: &'static str,
        format: &'static str,
        priority: i64,
        description: &'static str,
    ) -> Column {
        Column {
            name: Cow::Borrowed(name),
            type_: Cow::Borrowed(type_),
            format: Cow::Borrowed(format),
            description: Cow::Borrowed(description),
            priority,
        }
    }
}

/// One printer column as a CRD's `additionalPrinterColumns` declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrinterColumn<'a> {
    /// Header.
    pub name: &'a str,
    /// `string`, `integer`, `number`, `boolean` or `date`.
    pub type_: &'a str,
    /// An OpenAPI format (`name`, `int32`, ...), or empty.
    pub format: &'a str,
    /// Description (empty: one naming the path).
    pub description: &'a str,
    /// 0 for the default view, more for `-o wide`.
    pub priority: i64,
    /// What the cell shows (see [`jsonpath`]).
    pub json_path: &'a str,
}

impl<'a> PrinterColumn<'a> {
    /// A column of priority 0 without format.
    pub const fn new(
        name: &'a str,
        type_: &'a str,
        json_path: &'a str,
        description: &'a str,
    ) -> Self {
        PrinterColumn {
            name,
            type_,
            format: "",
            description,
            priority: 0,
            json_path,
        }
    }
}

/// The cells of one object.
pub type CellsFn = fn(&Value, DateTime<Utc>) -> Vec<Value>;

/// Turns objects of one kind into rows (kube's `TableConvertor`).
pub enum Convertor {
    /// A printer written for the kind.
    Printer {
        /// Its columns.
        columns: &'static [Column],
        /// Its cells, one per column.
        cells: CellsFn,
    },
    /// kube-apiserver's default convertor: NAME and CREATED AT (the
    /// creation time as RFC 3339).
    CreatedAt,
    /// Printer columns: NAME, then one cell per JSONPath.
    Columns {
        /// NAME and the printer columns.
        columns: Vec<Column>,
        /// The path of each printer column, with its type.
        paths: Vec<(JsonPath, String)>,
    },
}

/// The columns of [`Convertor::CreatedAt`].
const CREATED_AT_COLUMNS: &[Column] = &[
    Column::new("Name", "string", "name", 0, printers::NAME_DESC),
    Column::new("Created At", "date", "", 0, printers::AGE_DESC),
];

impl Convertor {
    /// A written printer.
    pub const fn printer(columns: &'static [Column], cells: CellsFn) -> Convertor {
        Convertor::Printer { columns, cells }
    }

    /// Printer columns as a CRD's: NAME first; no column at all means
    /// AGE (kube-apiserver's default for CRDs). A column whose path does
    /// not parse ends the list there, as kube-apiserver serves the
    /// columns before it.
    pub fn columns(cols: &[PrinterColumn]) -> Convertor {
        match Self::try_columns(cols) {
            Ok(c) | Err((c, _)) => c,
        }
    }

    /// [`Convertor::columns`], or (what is served anyway, why) when a
    /// path does not parse.
    pub fn try_columns(cols: &[PrinterColumn]) -> Result<Convertor, (Convertor, String)> {
        const DEFAULT: &[PrinterColumn] = &[PrinterColumn::new(
            "Age",
            "date",
            ".metadata.creationTimestamp",
            printers::AGE_DESC,
        )];
        let cols = if cols.is_empty() { DEFAULT } else { cols };
        let mut columns = vec![Column::new(
            "Name",
            "string",
            "name",
            0,
            printers::NAME_DESC,
        )];
        let mut paths = Vec::new();
        for c in cols {
            let path = match JsonPath::parse(c.json_path) {
                Ok(p) => p,
                Err(e) => {
                    let why = format!("unrecognized column definition {:?}: {e}", c.json_path);
                    return Err((Convertor::Columns { columns, paths }, why));
                }
            };
            let description = if c.description.is_empty() {
                format!(
                    "Custom resource definition column (in JSONPath format): {}",
                    c.json_path
                )
            } else {
                c.description.to_string()
            };
            columns.push(Column {
                name: Cow::Owned(c.name.to_string()),
                type_: Cow::Owned(c.type_.to_string()),
                format: Cow::Owned(c.format.to_string()),
                description: Cow::Owned(description),
                priority: c.priority,
            });
            paths.push((path, c.type_.to_string()));
        }
        Ok(Convertor::Columns { columns, paths })
    }

    /// The convertor of a CRD version's `additionalPrinterColumns` (the
    /// JSON list as the CRD holds it).
    pub fn from_crd(additional_printer_columns: &Value) -> Result<Convertor, String> {
        let list = match additional_printer_columns {
            Value::Null => &[][..],
            Value::Array(a) => a.as_slice(),
            _ => return Err("additionalPrinterColumns is not a list".into()),
        };
        let cols: Vec<PrinterColumn> = list
            .iter()
            .map(|c| PrinterColumn {
                name: cells::text(c, &["name"]),
                type_: cells::text(c, &["type"]),
                format: cells::text(c, &["format"]),
                description: cells::text(c, &["description"]),
                priority: cells::int(c, &["priority"]),
                json_path: cells::text(c, &["jsonPath"]),
            })
            .collect();
        Self::try_columns(&cols).map_err(|(_, why)| why)
    }

    /// The column definitions.
    pub fn column_definitions(&self) -> &[Column] {
        match self {
            Convertor::Printer { columns, .. } => columns,
            Convertor::CreatedAt => CREATED_AT_COLUMNS,
            Convertor::Columns { columns, .. } => columns,
        }
    }

    /// The cells of `obj`'s row, ages as of `now`.
    pub fn cells(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        match self {
            Convertor::Printer { cells, .. } => cells(obj, now),
            Convertor::CreatedAt => {
                let created = cells::time(cells::at(obj, &["metadata", "creationTimestamp"]))
                    .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
                    .unwrap_or_else(|| "0001-01-01T00:00:00Z".into());
                vec![cells::name(obj), Value::String(created)]
            }
            Convertor::Columns { paths, .. } => {
                let mut out = Vec::with_capacity(paths.len() + 1);
                out.push(cells::name(obj));
                for (path, type_) in paths {
                    out.push(column_cell(type_, path.first(obj), now));
                }
                out
            }
        }
    }

    /// Whether a list without items has `rows: null` (kube's default
    /// convertor) rather than `[]`.
    fn null_when_empty(&self) -> bool {
        matches!(self, Convertor::CreatedAt)
    }
}

/// A printer column's cell (`cellForJSONValue`; strings as client-go's
/// JSONPath prints them); `null` when the path finds nothing or the value
/// is not of the column's type.
fn column_cell(type_: &str, v: Option<&Value>, now: DateTime<Utc>) -> Value {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Value::Null;
    };
    match (type_, v) {
        ("string", v) => Value::String(cells::go_print(v)),
        ("integer", Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .map_or(Value::Null, Value::from),
        ("number", Value::Number(n)) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 9e15 => Value::from(f as i64),
            Some(f) => Value::from(f),
            None => Value::Null,
        },
        ("boolean", Value::Bool(b)) => Value::Bool(*b),
        ("date", Value::String(t)) if t.is_empty() => Value::String("<unknown>".into()),
        ("date", Value::String(t)) => match DateTime::parse_from_rfc3339(t) {
            Ok(_) => Value::String(cells::since(v, now)),
            Err(_) => Value::String("<invalid>".into()),
        },
        _ => Value::Null,
    }
}

/// What a row's `object` holds (`includeObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    /// PartialObjectMetadata (the default).
    Metadata,
    /// The whole object.
    Object,
    /// `null`.
    None,
}

impl IncludeObject {
    /// The `includeObject` query parameter; 400 as kube-apiserver for
    /// another value.
    pub fn parse(v: Option<&str>) -> ApiResult<IncludeObject> {
        match v.unwrap_or("") {
            "" | "Metadata" => Ok(IncludeObject::Metadata),
            "Object" => Ok(IncludeObject::Object),
            "None" => Ok(IncludeObject::None),
            other => Err(ApiError::bad_request(format!(
                "Unable to convert to Table as requested: includeObject: Invalid value: \
                 {other:?}: must be 'Metadata', 'Object', 'None', or empty"
            ))),
        }
    }
}

/// How a Table is built.
#[derive(Debug, Clone, Copy)]
pub struct TableOptions {
    /// meta.k8s.io version of the Table.
    pub version: MetaVersion,
    /// What each row's object holds.
    pub include: IncludeObject,
    /// Whether `columnDefinitions` are sent (`null` otherwise).
    pub headers: bool,
}

/// A PartialObjectMetadata of `obj`.
fn partial(obj: &Value, version: MetaVersion) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": version.api_version(),
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

/// `obj` with its kind and apiVersion (as kube-apiserver converts a row's
/// object to the resource's version).
fn typed(mut obj: Value, info: &ResourceInfo) -> Value {
    if let Value::Object(m) = &mut obj {
        m.insert("apiVersion".into(), Value::String(info.api_version()));
        m.insert("kind".into(), Value::String(info.kind.to_string()));
    }
    obj
}

fn ends_initial_events(obj: &Value) -> bool {
    cells::at(
        obj,
        &["metadata", "annotations", "k8s.io/initial-events-end"],
    )
    .as_str()
        == Some("true")
}

/// The row of `obj`.
fn row(
    conv: &Convertor,
    obj: Value,
    opts: &TableOptions,
    info: &ResourceInfo,
    now: DateTime<Utc>,
) -> Value {
    let cells = conv.cells(&obj, now);
    let object = match opts.include {
        IncludeObject::None => Value::Null,
        IncludeObject::Object if !ends_initial_events(&obj) => typed(obj, info),
        IncludeObject::Object | IncludeObject::Metadata => partial(&obj, opts.version),
    };
    json!({ "cells": cells, "object": object })
}

/// The `metadata` of a list kept in its Table or PartialObjectMetadataList.
fn list_meta(meta: &Value) -> Value {
    let mut out = Map::new();
    for k in ["resourceVersion", "continue", "remainingItemCount"] {
        if let Some(v) = meta.get(k).filter(|v| !v.is_null()) {
            out.insert(k.into(), v.clone());
        }
    }
    Value::Object(out)
}

/// A Table of `objects` with list metadata `meta`.
pub fn table(
    conv: &Convertor,
    info: &ResourceInfo,
    objects: Vec<Value>,
    meta: &Value,
    opts: &TableOptions,
    now: DateTime<Utc>,
) -> Value {
    let rows = if objects.is_empty() && conv.null_when_empty() {
        Value::Null
    } else {
        Value::Array(
            objects
                .into_iter()
                .map(|o| row(conv, o, opts, info, now))
                .collect(),
        )
    };
    let columns = if opts.headers {
        serde_json::to_value(conv.column_definitions()).unwrap_or(Value::Null)
    } else {
        Value::Null
    };
    json!({
        "kind": "Table",
        "apiVersion": opts.version.api_version(),
        "metadata": list_meta(meta),
        "columnDefinitions": columns,
        "rows": rows,
    })
}

/// The Table of one object (its `resourceVersion` as the Table's).
fn table_of_one(
    conv: &Convertor,
    info: &ResourceInfo,
    obj: Value,
    opts: &TableOptions,
    now: DateTime<Utc>,
) -> Value {
    let meta = json!({"resourceVersion": cells::at(&obj, &["metadata", "resourceVersion"])});
    table(conv, info, vec![obj], &meta, opts, now)
}

/// The Go type kube-apiserver names in its 406 for a PartialObjectMetadata
/// of a list (or a list of one object): `*core.ConfigMap`.
fn go_type(info: &ResourceInfo, list: bool) -> String {
    let package = match info.group {
        "" => "core",
        g => g.split('.').next().unwrap_or(g),
    };
    format!("*{package}.{}{}", info.kind, if list { "List" } else { "" })
}

/// The body of a get or list of `info` answered as `output`: `body` is
/// the object, or the list, as stored; `include` is the `includeObject`
/// parameter.
pub fn render(
    output: Output,
    info: &ResourceInfo,
    read: Read,
    body: Value,
    include: Option<&str>,
    now: DateTime<Utc>,
) -> ApiResult<Value> {
    let list = read == Read::List;
    match output {
        Output::Object => Ok(body),
        Output::Table(version) => {
            let opts = TableOptions {
                version,
                include: IncludeObject::parse(include)?,
                headers: true,
            };
            let conv = for_kind(info.group, info.kind);
            if !list {
                return Ok(table_of_one(conv, info, body, &opts, now));
            }
            let (meta, items) = split_list(body);
            Ok(table(conv, info, items, &meta, &opts, now))
        }
        Output::Partial(_) if list => Err(ApiError::new(
            406,
            "NotAcceptable",
            format!(
                "you requested PartialObjectMetadata, but the requested object is a list ({})",
                go_type(info, true)
            ),
        )),
        Output::Partial(version) => Ok(partial(&body, version)),
        Output::PartialList(version) if list => {
            let (meta, items) = split_list(body);
            Ok(json!({
                "kind": "PartialObjectMetadataList",
                "apiVersion": version.api_version(),
                "metadata": list_meta(&meta),
                "items": items.iter().map(|o| partial(o, version)).collect::<Vec<_>>(),
            }))
        }
        Output::PartialList(_) => Err(ApiError::new(
            406,
            "NotAcceptable",
            format!(
                "you requested PartialObjectMetadataList, but the requested object is not a list ({})",
                go_type(info, false)
            ),
        )),
    }
}

/// A list body's metadata and items.
fn split_list(body: Value) -> (Value, Vec<Value>) {
    match body {
        Value::Object(mut m) => {
            let items = match m.remove("items") {
                Some(Value::Array(a)) => a,
                _ => Vec::new(),
            };
            (m.remove("metadata").unwrap_or(Value::Null), items)
        }
        _ => (Value::Null, Vec::new()),
    }
}

/// Turns a watch's events (lines of JSON) into the representation
/// negotiated: each object a Table of one row (column definitions in the
/// first event only) or a PartialObjectMetadata.
pub struct WatchEncoder {
    output: Output,
    info: &'static ResourceInfo,
    include: IncludeObject,
    headers: bool,
}

impl WatchEncoder {
    /// The encoder of a watch of `info` answered as `output`; 400 for a
    /// bad `includeObject` of a Table.
    pub fn new(
        output: Output,
        info: &'static ResourceInfo,
        include: Option<&str>,
    ) -> ApiResult<WatchEncoder> {
        let include = match output {
            Output::Table(_) => IncludeObject::parse(include)?,
            _ => IncludeObject::Metadata,
        };
        Ok(WatchEncoder {
            output,
            info,
            include,
            headers: true,
        })
    }

    /// Whether events pass unchanged.
    pub fn is_identity(&self) -> bool {
        matches!(self.output, Output::Object | Output::PartialList(_))
    }

    /// One event line (`{"type":..,"object":..}` and a newline), encoded
    /// for the client, ages as of `now`.
    pub fn encode(&mut self, line: Vec<u8>, now: DateTime<Utc>) -> Vec<u8> {
        if self.is_identity() {
            return line;
        }
        let Ok(mut event) = serde_json::from_slice::<Value>(&line) else {
            return line;
        };
        let obj = event
            .get_mut("object")
            .map(Value::take)
            .unwrap_or(Value::Null);
        let out = if cells::text(&obj, &["kind"]) == "Status" {
            obj
        } else {
            match self.output {
                Output::Table(version) => {
                    let opts = TableOptions {
                        version,
                        include: self.include,
                        headers: self.headers,
                    };
                    let conv = for_kind(self.info.group, self.info.kind);
                    table_of_one(conv, self.info, obj, &opts, now)
                }
                Output::Partial(version) => partial(&obj, version),
                Output::Object | Output::PartialList(_) => obj,
            }
        };
        // kube-apiserver drops the headers after the first event of any
        // type.
        self.headers = false;
        event["object"] = out;
        let mut line = serde_json::to_vec(&event).unwrap_or(line);
        line.push(b'\n');
        line
    }
}

#[cfg(test)]
mod tests;
