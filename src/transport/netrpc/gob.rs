//! Reading Go `encoding/gob` as the controller writes it, straight into the
//! shapes this plugin needs.
//!
//! One [`TypeTable`] per stream holds the remote type definitions. A value is
//! decoded against a static [`Schema`] (the fields the model has); the field
//! mapping from a remote struct id onto a schema is compiled once per stream
//! and cached, and every field the schema lacks is skipped as it is read.
//! A value is read twice, both times in linear time: [`ValueDecoder::check`]
//! finds every gob error and bounds the memory of its model without
//! allocating, then [`ValueDecoder::deserializer`] builds the model straight
//! from the bytes (serde), with no tree in between. Each message is looked
//! at once, so a request split over hundreds of messages decodes in linear
//! time.

use std::collections::HashMap;
use std::sync::Arc;

/// Built-in gob type ids (encoding/gob type.go).
pub mod ids {
    pub const BOOL: i64 = 1;
    pub const INT: i64 = 2;
    pub const UINT: i64 = 3;
    pub const FLOAT: i64 = 4;
    pub const BYTES: i64 = 5;
    pub const STRING: i64 = 6;
    pub const COMPLEX: i64 = 7;
    pub const INTERFACE: i64 = 8;
}

/// Deepest nesting followed before giving up (a hostile stream must not
/// overflow the stack).
const MAX_DEPTH: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GobError {
    #[error("gob: truncated value")]
    Truncated,
    #[error("gob: invalid unsigned integer")]
    BadUint,
    #[error("gob: {0}")]
    Corrupt(String),
    #[error("gob: undefined type id {0}")]
    UndefinedType(i64),
    #[error("gob: {0}")]
    Mismatch(String),
    /// A message longer than [`MAX_MESSAGE`]; `header` is the length
    /// prefix's size, so the caller can skip `len` bytes after it.
    #[error("gob: message of {len} bytes exceeds the limit of {MAX_MESSAGE} bytes")]
    TooLarge { header: usize, len: u64 },
}

type Result<T> = std::result::Result<T, GobError>;

/// A remote type definition (encoding/gob `wireType`).
#[derive(Debug, Clone, PartialEq)]
pub enum WireType {
    Array {
        elem: i64,
    },
    Slice {
        elem: i64,
    },
    Struct {
        name: String,
        fields: Vec<(String, i64)>,
    },
    Map {
        key: i64,
        elem: i64,
    },
    /// GobEncoder, BinaryMarshaler or TextMarshaler: opaque bytes.
    Marshaler {
        name: String,
    },
}

/// The types one side of a stream has defined.
#[derive(Debug, Default)]
pub struct TypeTable {
    types: HashMap<i64, WireType>,
}

impl TypeTable {
    pub fn get(&self, id: i64) -> Option<&WireType> {
        self.types.get(&id)
    }

    fn define(&mut self, id: i64, wt: WireType) -> Result<()> {
        if id <= ids::INTERFACE || self.types.contains_key(&id) {
            return Err(GobError::Corrupt(format!("duplicate type id {id}")));
        }
        if self.types.len() >= MAX_TYPES {
            return Err(GobError::Corrupt(format!(
                "more than {MAX_TYPES} type definitions on one stream"
            )));
        }
        self.types.insert(id, wt);
        Ok(())
    }

    fn is_struct(&self, id: i64) -> bool {
        matches!(self.types.get(&id), Some(WireType::Struct { .. }))
    }

    /// A type's kind and name, for error messages.
    pub fn describe(&self, id: i64) -> String {
        match id {
            ids::BOOL => "bool".into(),
            ids::INT => "int".into(),
            ids::UINT => "uint".into(),
            ids::FLOAT => "float".into(),
            ids::BYTES => "bytes".into(),
            ids::STRING => "string".into(),
            ids::COMPLEX => "complex".into(),
            ids::INTERFACE => "interface".into(),
            _ => match self.types.get(&id) {
                Some(WireType::Struct { name, .. }) => format!("struct {name}"),
                Some(WireType::Slice { .. }) => "slice".into(),
                Some(WireType::Array { .. }) => "array".into(),
                Some(WireType::Map { .. }) => "map".into(),
                Some(WireType::Marshaler { name }) => format!("encoded {name}"),
                None => format!("undefined type {id}"),
            },
        }
    }
}

/// A cursor over gob bytes.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos.min(self.buf.len())..]
    }

    pub fn uint(&mut self) -> Result<u64> {
        let first = *self.buf.get(self.pos).ok_or(GobError::Truncated)?;
        self.pos += 1;
        if first < 0x80 {
            return Ok(u64::from(first));
        }
        let n = usize::from(first.wrapping_neg());
        if n > 8 {
            return Err(GobError::BadUint);
        }
        let bytes = self.take(n)?;
        Ok(bytes.iter().fold(0u64, |acc, &b| acc << 8 | u64::from(b)))
    }

    pub fn int(&mut self) -> Result<i64> {
        let u = self.uint()?;
        Ok(if u & 1 == 1 {
            !(u >> 1) as i64
        } else {
            (u >> 1) as i64
        })
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).ok_or(GobError::Truncated)?;
        let bytes = self.buf.get(self.pos..end).ok_or(GobError::Truncated)?;
        self.pos = end;
        Ok(bytes)
    }

    pub fn bytes(&mut self) -> Result<&'a [u8]> {
        let n = usize::try_from(self.uint()?).map_err(|_| GobError::Truncated)?;
        self.take(n)
    }

    pub fn string(&mut self) -> Result<String> {
        self.str().map(str::to_string)
    }

    /// A string, borrowed from the bytes.
    pub fn str(&mut self) -> Result<&'a str> {
        std::str::from_utf8(self.bytes()?)
            .map_err(|_| GobError::Corrupt("string is not UTF-8".into()))
    }

    /// A count that cannot exceed the bytes left (each element takes at least one).
    fn count(&mut self) -> Result<usize> {
        let n = self.uint()?;
        if n > (self.buf.len() - self.pos.min(self.buf.len())) as u64 {
            return Err(GobError::Truncated);
        }
        Ok(n as usize)
    }
}

/// The type id a definition message declares (`-id` on the wire): positive,
/// and `i64::MIN`, which has no negation, is corrupt rather than a panic.
fn defined_id(id: i64) -> Result<i64> {
    id.checked_neg()
        .ok_or_else(|| GobError::Corrupt(format!("invalid type id {id}")))
}

/// The next field number of a struct: decode.go refuses a delta that does
/// not fit an `int` (a negative delta) and a field past the struct's end;
/// `index` is `None` before the first field (numbers start at -1 + delta).
fn next_field(index: Option<usize>, delta: u64) -> Result<usize> {
    let delta = i64::try_from(delta)
        .ok()
        .and_then(|d| usize::try_from(d).ok())
        .ok_or_else(|| GobError::Corrupt(format!("negative field delta {}", delta as i64)))?;
    match index {
        None => Ok(delta - 1),
        Some(i) => i
            .checked_add(delta)
            .ok_or_else(|| GobError::Corrupt("field number overflow".into())),
    }
}

/// Reads one field-delta encoded struct of built-in fields (the wire type
/// definitions), calling `field(index, reader)` for each present field.
fn read_fields(
    r: &mut Reader<'_>,
    mut field: impl FnMut(u64, &mut Reader<'_>) -> Result<()>,
) -> Result<()> {
    let mut index = 0u64;
    loop {
        let delta = r.uint()?;
        if delta == 0 {
            return Ok(());
        }
        if delta > i64::MAX as u64 {
            return Err(GobError::Corrupt(format!(
                "negative field delta {}",
                delta as i64
            )));
        }
        index = index
            .checked_add(delta)
            .ok_or_else(|| GobError::Corrupt("field number overflow".into()))?;
        field(index, r)?;
    }
}

/// `CommonType{Name string; Id int}`: the name.
fn read_common(r: &mut Reader<'_>) -> Result<String> {
    let mut name = String::new();
    read_fields(r, |i, r| {
        match i {
            1 => name = r.string()?,
            2 => {
                r.int()?;
            }
            _ => return Err(GobError::Corrupt("bad CommonType".into())),
        }
        Ok(())
    })?;
    Ok(name)
}

/// A `wireType` value (type.go): exactly one of its fields is set.
fn read_wire_type(r: &mut Reader<'_>) -> Result<WireType> {
    let mut out = None;
    read_fields(r, |kind, r| {
        let mut name = String::new();
        let (mut elem, mut key) = (0, 0);
        let mut fields = Vec::new();
        read_fields(r, |i, r| {
            match (kind, i) {
                (_, 1) => name = read_common(r)?,
                (1 | 2, 2) | (4, 3) => elem = r.int()?,
                (1, 3) => {
                    r.int()?;
                }
                (4, 2) => key = r.int()?,
                (3, 2) => {
                    let n = r.count()?;
                    if n > MAX_FIELDS {
                        return Err(GobError::Corrupt(format!(
                            "struct of {n} fields, more than {MAX_FIELDS}"
                        )));
                    }
                    for _ in 0..n {
                        let (mut fname, mut fid) = (String::new(), 0);
                        read_fields(r, |j, r| {
                            match j {
                                1 => fname = r.string()?,
                                2 => fid = r.int()?,
                                _ => return Err(GobError::Corrupt("bad fieldType".into())),
                            }
                            Ok(())
                        })?;
                        // Go sends exported fields only, each with its
                        // type: an empty one is refused rather than kept
                        // (one byte on the wire, 32 in the table).
                        if fname.is_empty() || fid == 0 {
                            return Err(GobError::Corrupt("bad fieldType".into()));
                        }
                        fields.push((fname, fid));
                    }
                }
                _ => return Err(GobError::Corrupt(format!("bad type definition field {i}"))),
            }
            Ok(())
        })?;
        out = Some(match kind {
            1 => WireType::Array { elem },
            2 => WireType::Slice { elem },
            3 => WireType::Struct { name, fields },
            4 => WireType::Map { key, elem },
            5..=7 => WireType::Marshaler { name },
            _ => return Err(GobError::Corrupt(format!("unknown wire type kind {kind}"))),
        });
        Ok(())
    })?;
    out.ok_or_else(|| GobError::Corrupt("empty type definition".into()))
}

/// What a local value expects on the wire; enough of Kubernetes' and Argo's
/// types to fill the model (`crate::model`), which is deserialised straight
/// from the gob bytes ([`ValueDecoder::deserializer`]) under the JSON names.
#[derive(Debug)]
pub enum Schema {
    Str,
    Int,
    Uint,
    Bool,
    /// `json.RawMessage`: bytes holding JSON.
    RawJson,
    /// `intstr.IntOrString{Type, IntVal, StrVal}` → a JSON number or string.
    IntOrString,
    Struct(&'static [Field]),
    /// A slice, and the bytes one element takes in the model.
    Slice(&'static Schema, usize),
    /// `map[string]T`, and the bytes one entry takes in the model.
    Map(&'static Schema, usize),
    /// A value that costs the model this many bytes beyond its parent's
    /// size when present (a struct decoded into a JSON object).
    Charged(usize, &'static Schema),
}

impl Schema {
    fn kind(&self) -> &'static str {
        match self {
            Schema::Str => "string",
            Schema::Int => "int",
            Schema::Uint => "uint",
            Schema::Bool => "bool",
            Schema::RawJson => "bytes (JSON)",
            Schema::IntOrString | Schema::Struct(_) => "struct",
            Schema::Slice(..) => "slice",
            Schema::Map(..) => "map[string]",
            Schema::Charged(_, inner) => inner.kind(),
        }
    }
}

/// One field of a [`Schema::Struct`]: the Go name on the wire and the JSON
/// name in the output. An empty JSON name embeds the field's struct: its
/// fields appear as the parent's (Go's embedded `TypeMeta`).
#[derive(Debug)]
pub struct Field {
    pub go: &'static str,
    pub json: &'static str,
    pub schema: &'static Schema,
}

/// A compiled mapping from one remote struct onto one schema struct.
struct Plan {
    /// Per remote field: its type id and the local field, if any.
    fields: Vec<(i64, Option<&'static Field>)>,
}

/// Remote type table plus compiled plans: everything one direction of a
/// stream needs to decode values.
#[derive(Default)]
pub struct ValueDecoder {
    pub types: TypeTable,
    plans: HashMap<(usize, i64), Arc<Plan>>,
}

/// The model budget, shared with the gRPC transport: see
/// [`crate::transport::MODEL_PER_BYTE`].
pub use crate::transport::{MODEL_BASE, MODEL_PER_BYTE};

/// Bytes of model a decode may still allocate.
struct Budget {
    left: usize,
    limit: usize,
    size: usize,
}

impl Budget {
    fn for_bytes(size: usize) -> Self {
        let limit = size
            .saturating_mul(MODEL_PER_BYTE)
            .saturating_add(MODEL_BASE);
        Budget {
            left: limit,
            limit,
            size,
        }
    }

    fn charge(&mut self, bytes: usize) -> Result<()> {
        self.left = self.left.checked_sub(bytes).ok_or_else(|| {
            GobError::Corrupt(format!(
                "a value of {} bytes decodes to more than {} bytes ({MODEL_PER_BYTE} per byte + {MODEL_BASE})",
                self.size, self.limit
            ))
        })?;
        Ok(())
    }
}

/// What a `Vec` of elements of `size` bytes grown by doubling costs: its
/// first block, then per element its share of the final block and of the
/// one it was copied from. Charged as elements arrive, so a corrupt element
/// is reported as such whatever count came before it.
fn vec_cost(size: usize) -> (usize, usize) {
    (4 * size, 3 * size)
}

/// What a `BTreeMap` of entries of `size` bytes costs: two nodes, then per
/// entry its share of a leaf of 11 entries at least 5 used, plus the
/// internal nodes above the leaves.
fn btree_cost(size: usize) -> (usize, usize) {
    let node = 11 * size + 16;
    (2 * (node + node / 4), (node + node / 4) / 5 + 1)
}

impl ValueDecoder {
    /// Handles a message that starts with a negative id: a type definition.
    fn define(&mut self, id: i64, r: &mut Reader<'_>) -> Result<()> {
        let wt = read_wire_type(r)?;
        self.types.define(id, wt)
    }

    fn plan(&mut self, fields: &'static [Field], wire: i64) -> Result<Arc<Plan>> {
        let key = (fields.as_ptr() as usize, wire);
        if let Some(plan) = self.plans.get(&key) {
            return Ok(plan.clone());
        }
        let Some(WireType::Struct {
            name,
            fields: remote,
        }) = self.types.get(wire)
        else {
            return Err(GobError::Mismatch(format!(
                "want a struct, got {}",
                self.types.describe(wire)
            )));
        };
        let mut out = Vec::with_capacity(remote.len());
        for (fname, fid) in remote {
            let local = fields.iter().find(|f| f.go == fname);
            if let Some(f) = local
                && !self.compatible(f.schema, *fid)
            {
                return Err(GobError::Mismatch(format!(
                    "wrong type ({}) for received field {name}.{fname}",
                    self.types.describe(*fid)
                )));
            }
            out.push((*fid, local));
        }
        let plan = Arc::new(Plan { fields: out });
        self.plans.insert(key, plan.clone());
        Ok(plan)
    }

    /// A plan [`Self::check`] compiled.
    fn compiled(&self, fields: &'static [Field], wire: i64) -> Result<Arc<Plan>> {
        self.plans
            .get(&(fields.as_ptr() as usize, wire))
            .cloned()
            .ok_or_else(|| GobError::Mismatch(format!("no plan for type {wire}")))
    }

    fn compatible(&self, schema: &Schema, wire: i64) -> bool {
        match schema {
            Schema::Str => wire == ids::STRING,
            Schema::Int => wire == ids::INT,
            Schema::Uint => wire == ids::UINT,
            Schema::Bool => wire == ids::BOOL,
            Schema::RawJson => wire == ids::BYTES,
            Schema::IntOrString | Schema::Struct(_) => self.types.is_struct(wire),
            Schema::Slice(..) => matches!(
                self.types.get(wire),
                Some(WireType::Slice { .. } | WireType::Array { .. })
            ),
            Schema::Map(..) => matches!(
                self.types.get(wire),
                Some(WireType::Map {
                    key: ids::STRING,
                    ..
                })
            ),
            Schema::Charged(_, inner) => self.compatible(inner, wire),
        }
    }

    /// Checks that the value of remote type `wire` at `r` decodes as
    /// `schema` and that its model fits the budget for `size` bytes,
    /// without allocating anything for it. Leaves `r` after the value.
    pub fn check(
        &mut self,
        schema: &'static Schema,
        wire: i64,
        r: &mut Reader<'_>,
        size: usize,
    ) -> Result<()> {
        self.check_value(schema, wire, r, 0, &mut Budget::for_bytes(size))
    }

    fn check_value(
        &mut self,
        schema: &'static Schema,
        wire: i64,
        r: &mut Reader<'_>,
        depth: usize,
        budget: &mut Budget,
    ) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(GobError::Corrupt("value nested too deeply".into()));
        }
        if !self.compatible(schema, wire) {
            return Err(GobError::Mismatch(format!(
                "wrong type: got {}, want {}",
                self.types.describe(wire),
                schema.kind()
            )));
        }
        match schema {
            Schema::Str => budget.charge(r.str()?.len())?,
            Schema::Int => {
                r.int()?;
            }
            Schema::Uint | Schema::Bool => {
                r.uint()?;
            }
            Schema::RawJson => {
                let bytes = r.bytes()?;
                let cost = json_cost(bytes).map_err(|e| {
                    GobError::Mismatch(format!("json.RawMessage is not valid JSON: {e}"))
                })?;
                budget.charge(cost)?;
            }
            Schema::IntOrString => {
                self.check_value(&INT_OR_STRING_FIELDS, wire, r, depth + 1, budget)?
            }
            Schema::Struct(fields) => {
                let plan = self.plan(fields, wire)?;
                let mut index: Option<usize> = None;
                loop {
                    let delta = r.uint()?;
                    if delta == 0 {
                        break;
                    }
                    let i = next_field(index, delta)?;
                    index = Some(i);
                    let Some(&(fid, local)) = plan.fields.get(i) else {
                        return Err(GobError::Corrupt(format!("field number {i} out of range")));
                    };
                    match local {
                        Some(f) => self.check_value(f.schema, fid, r, depth + 1, budget)?,
                        None => self.skip(fid, r, depth + 1)?,
                    }
                }
            }
            Schema::Slice(elem_schema, size) => {
                let elem = match self.types.get(wire) {
                    Some(WireType::Slice { elem } | WireType::Array { elem }) => *elem,
                    _ => return Err(GobError::UndefinedType(wire)),
                };
                let n = r.count()?;
                let (first, each) = vec_cost(*size);
                for i in 0..n {
                    budget.charge(if i == 0 { first + each } else { each })?;
                    self.check_value(elem_schema, elem, r, depth + 1, budget)?;
                }
            }
            Schema::Map(elem_schema, size) => {
                let elem = match self.types.get(wire) {
                    Some(WireType::Map { elem, .. }) => *elem,
                    _ => return Err(GobError::UndefinedType(wire)),
                };
                let n = r.count()?;
                let (first, each) = btree_cost(*size);
                for i in 0..n {
                    let key = r.str()?.len();
                    budget.charge(key + if i == 0 { first + each } else { each })?;
                    self.check_value(elem_schema, elem, r, depth + 1, budget)?;
                }
            }
            Schema::Charged(cost, inner) => {
                budget.charge(*cost)?;
                self.check_value(inner, wire, r, depth, budget)?;
            }
        }
        Ok(())
    }

    /// Calls `f` with each field of the struct value of remote type `wire`
    /// at `r` that `schema` has, and a deserializer of its value; a value
    /// [`Self::check`] accepted.
    pub fn each_field<'a, E: From<GobError>>(
        &self,
        schema: &'static Schema,
        wire: i64,
        r: &mut Reader<'a>,
        mut f: impl FnMut(&'static Field, GobDeserializer<'_, 'a>) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        let Schema::Struct(fields) = schema else {
            return Err(GobError::Mismatch(format!("want a struct, got {}", schema.kind())).into());
        };
        let plan = self.compiled(fields, wire)?;
        let mut index: Option<usize> = None;
        loop {
            let delta = r.uint()?;
            if delta == 0 {
                return Ok(());
            }
            let i = next_field(index, delta)?;
            index = Some(i);
            let Some(&(fid, local)) = plan.fields.get(i) else {
                return Err(GobError::Corrupt(format!("field number {i} out of range")).into());
            };
            match local {
                Some(field) => f(field, self.deserializer(field.schema, fid, r))?,
                None => self.skip(fid, r, 1)?,
            }
        }
    }

    /// A deserializer of the value of remote type `wire` at `r` as
    /// `schema`, for a value [`Self::check`] accepted: the model is built
    /// straight from the bytes, with no tree in between.
    pub fn deserializer<'x, 'a>(
        &'x self,
        schema: &'static Schema,
        wire: i64,
        r: &'x mut Reader<'a>,
    ) -> GobDeserializer<'x, 'a> {
        GobDeserializer {
            dec: self,
            schema,
            wire,
            r,
        }
    }

    /// Skips a value of remote type `wire` (decode.go, `decIgnoreOpFor`).
    pub fn skip(&self, wire: i64, r: &mut Reader<'_>, depth: usize) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(GobError::Corrupt("value nested too deeply".into()));
        }
        match wire {
            ids::BOOL | ids::INT | ids::UINT | ids::FLOAT => {
                r.uint()?;
            }
            ids::COMPLEX => {
                r.uint()?;
                r.uint()?;
            }
            ids::BYTES | ids::STRING => {
                r.bytes()?;
            }
            ids::INTERFACE => {
                // A nil interface is just its empty name.
                if !r.bytes()?.is_empty() {
                    let id = r.int()?;
                    if id < 0 {
                        return Err(GobError::Corrupt(
                            "type definition inside a nested interface value".into(),
                        ));
                    }
                    r.bytes()?;
                }
            }
            _ => match self.types.get(wire) {
                None => return Err(GobError::UndefinedType(wire)),
                Some(WireType::Marshaler { .. }) => {
                    r.bytes()?;
                }
                Some(WireType::Slice { elem } | WireType::Array { elem }) => {
                    let n = r.count()?;
                    for _ in 0..n {
                        self.skip(*elem, r, depth + 1)?;
                    }
                }
                Some(WireType::Map { key, elem }) => {
                    let n = r.count()?;
                    for _ in 0..n {
                        self.skip(*key, r, depth + 1)?;
                        self.skip(*elem, r, depth + 1)?;
                    }
                }
                Some(WireType::Struct { fields, .. }) => {
                    let mut index: Option<usize> = None;
                    loop {
                        let delta = r.uint()?;
                        if delta == 0 {
                            break;
                        }
                        let i = next_field(index, delta)?;
                        index = Some(i);
                        let Some((_, fid)) = fields.get(i) else {
                            return Err(GobError::Corrupt(format!(
                                "field number {i} out of range"
                            )));
                        };
                        self.skip(*fid, r, depth + 1)?;
                    }
                }
            },
        }
        Ok(())
    }
}

/// An upper bound of the heap a JSON text takes as a `serde_json::Value`
/// (what the model keeps of a `json.RawMessage`), found without building it.
fn json_cost(bytes: &[u8]) -> std::result::Result<usize, serde_json::Error> {
    serde_json::from_slice::<JsonCost>(bytes).map(|c| c.0)
}

struct JsonCost(usize);

impl<'de> serde::Deserialize<'de> for JsonCost {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_any(JsonCostVisitor)
    }
}

struct JsonCostVisitor;

const JSON_VALUE: usize = std::mem::size_of::<serde_json::Value>();
/// One object entry: the stored hash, key and value, and its index slot.
const JSON_ENTRY: usize = 8 + std::mem::size_of::<String>() + JSON_VALUE + 2 * 9;

impl<'de> serde::de::Visitor<'de> for JsonCostVisitor {
    type Value = JsonCost;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> std::result::Result<JsonCost, E> {
        Ok(JsonCost(0))
    }
    fn visit_i64<E>(self, _: i64) -> std::result::Result<JsonCost, E> {
        Ok(JsonCost(0))
    }
    fn visit_u64<E>(self, _: u64) -> std::result::Result<JsonCost, E> {
        Ok(JsonCost(0))
    }
    fn visit_f64<E>(self, _: f64) -> std::result::Result<JsonCost, E> {
        Ok(JsonCost(0))
    }
    fn visit_str<E>(self, s: &str) -> std::result::Result<JsonCost, E> {
        Ok(JsonCost(s.len()))
    }
    fn visit_unit<E>(self) -> std::result::Result<JsonCost, E> {
        Ok(JsonCost(0))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> std::result::Result<JsonCost, A::Error> {
        let (mut n, mut inner) = (0usize, 0usize);
        while let Some(JsonCost(c)) = seq.next_element()? {
            n += 1;
            inner = inner.saturating_add(c);
        }
        let (first, each) = vec_cost(JSON_VALUE);
        Ok(JsonCost(
            inner.saturating_add(first + n.saturating_mul(each)),
        ))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<JsonCost, A::Error> {
        let (mut n, mut inner) = (0usize, 0usize);
        while let Some((JsonCost(k), JsonCost(v))) = map.next_entry()? {
            n += 1;
            inner = inner.saturating_add(k).saturating_add(v);
        }
        let (first, each) = vec_cost(JSON_ENTRY);
        Ok(JsonCost(
            inner.saturating_add(first + n.saturating_mul(each)),
        ))
    }
}

/// Why [`check_json`] refused a JSON text.
#[derive(Debug, thiserror::Error)]
pub enum JsonCheckError {
    /// The text is not JSON.
    #[error(transparent)]
    Syntax(serde_json::Error),
    /// Its model would take more than the budget for its size.
    #[error(
        "{size} bytes of JSON decode to more than {limit} bytes ({MODEL_PER_BYTE} per byte + {MODEL_BASE})"
    )]
    OverBudget { size: usize, limit: usize },
}

/// Checks that `json` is one JSON value and that the model `schema`
/// describes, built from it, fits the budget for its size (see
/// [`MODEL_PER_BYTE`]), without allocating anything for it: the
/// counterpart of [`ValueDecoder::check`] for the gRPC transport's
/// `rollout_json`. Fields the schema lacks are skipped and cost nothing, as
/// the model skips them; a value of the wrong kind is counted as a generic
/// one (the model refuses it with its own error later).
pub fn check_json(schema: &'static Schema, json: &[u8]) -> std::result::Result<(), JsonCheckError> {
    use serde::de::DeserializeSeed;
    let limit = json
        .len()
        .saturating_mul(MODEL_PER_BYTE)
        .saturating_add(MODEL_BASE);
    let mut budget = JsonBudget {
        left: limit,
        over: false,
    };
    let mut de = serde_json::Deserializer::from_slice(json);
    let checked = JsonSeed {
        schema,
        budget: &mut budget,
    }
    .deserialize(&mut de)
    .and_then(|()| de.end());
    match checked {
        Ok(()) => Ok(()),
        Err(_) if budget.over => Err(JsonCheckError::OverBudget {
            size: json.len(),
            limit,
        }),
        Err(e) => Err(JsonCheckError::Syntax(e)),
    }
}

struct JsonBudget {
    left: usize,
    over: bool,
}

impl JsonBudget {
    fn charge<E: serde::de::Error>(&mut self, bytes: usize) -> std::result::Result<(), E> {
        match self.left.checked_sub(bytes) {
            Some(left) => {
                self.left = left;
                Ok(())
            }
            None => {
                self.over = true;
                Err(E::custom("over the model budget"))
            }
        }
    }
}

/// One JSON value whose model is `schema`, charged to `budget`.
struct JsonSeed<'b> {
    schema: &'static Schema,
    budget: &'b mut JsonBudget,
}

/// The field of `fields` a JSON key names; fields of an empty JSON name
/// are flattened into their parent.
fn json_field(fields: &'static [Field], key: &str) -> Option<&'static Field> {
    fields.iter().find_map(|f| match f.schema {
        Schema::Struct(inner) if f.json.is_empty() => json_field(inner, key),
        _ => (f.json == key).then_some(f),
    })
}

/// A JSON object key: the field it names.
struct FieldKey(&'static [Field]);

impl<'de> serde::de::DeserializeSeed<'de> for FieldKey {
    type Value = Option<&'static Field>;
    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        d: D,
    ) -> std::result::Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> serde::de::Visitor<'de> for FieldKey {
    type Value = Option<&'static Field>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an object key")
    }
    fn visit_str<E>(self, key: &str) -> std::result::Result<Self::Value, E> {
        Ok(json_field(self.0, key))
    }
}

/// A JSON object key of a map: its length.
struct KeyLen;

impl<'de> serde::de::DeserializeSeed<'de> for KeyLen {
    type Value = usize;
    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        d: D,
    ) -> std::result::Result<usize, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> serde::de::Visitor<'de> for KeyLen {
    type Value = usize;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an object key")
    }
    fn visit_str<E>(self, key: &str) -> std::result::Result<usize, E> {
        Ok(key.len())
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for JsonSeed<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        match self.schema {
            // Kept as a JSON tree: all of it is built.
            Schema::RawJson | Schema::Charged(..) => {
                let JsonCost(cost) = <JsonCost as serde::Deserialize>::deserialize(d)?;
                let extra = match self.schema {
                    Schema::Charged(extra, _) => *extra,
                    _ => 0,
                };
                self.budget.charge(cost.saturating_add(extra))
            }
            _ => d.deserialize_any(self),
        }
    }
}

impl<'de> serde::de::Visitor<'de> for JsonSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_str<E: serde::de::Error>(self, s: &str) -> std::result::Result<(), E> {
        self.budget.charge(s.len())
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> std::result::Result<(), A::Error> {
        let Schema::Slice(elem, size) = self.schema else {
            // Not a list in the model: the model refuses it.
            while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
            return Ok(());
        };
        let (first, each) = vec_cost(*size);
        let mut started = false;
        loop {
            // Charged before the element is read, as the model grows.
            let cost = if started { each } else { first + each };
            let budget = &mut *self.budget;
            budget.charge::<A::Error>(cost)?;
            let seed = JsonSeed {
                schema: elem,
                budget,
            };
            if seq.next_element_seed(seed)?.is_none() {
                return Ok(());
            }
            started = true;
        }
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<(), A::Error> {
        match self.schema {
            Schema::Struct(fields) => {
                while let Some(field) = map.next_key_seed(FieldKey(fields))? {
                    match field {
                        Some(f) => map.next_value_seed(JsonSeed {
                            schema: f.schema,
                            budget: &mut *self.budget,
                        })?,
                        None => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
            }
            Schema::Map(elem, size) => {
                let (first, each) = btree_cost(*size);
                let mut started = false;
                while let Some(key) = map.next_key_seed(KeyLen)? {
                    let cost = if started { each } else { first + each };
                    started = true;
                    self.budget.charge::<A::Error>(key.saturating_add(cost))?;
                    map.next_value_seed(JsonSeed {
                        schema: elem,
                        budget: &mut *self.budget,
                    })?;
                }
            }
            _ => {
                while map
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
            }
        }
        Ok(())
    }
}

/// Why a model cannot be built from a checked value: a model error (a
/// number out of the field's range), or the gob error the check would have
/// reported.
#[derive(Debug)]
pub enum DeError {
    Gob(GobError),
    Model(String),
}

impl std::fmt::Display for DeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeError::Gob(e) => e.fmt(f),
            DeError::Model(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for DeError {}

impl serde::de::Error for DeError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        DeError::Model(msg.to_string())
    }
}

impl From<GobError> for DeError {
    fn from(e: GobError) -> Self {
        DeError::Gob(e)
    }
}

/// See [`ValueDecoder::deserializer`].
pub struct GobDeserializer<'x, 'a> {
    dec: &'x ValueDecoder,
    schema: &'static Schema,
    wire: i64,
    r: &'x mut Reader<'a>,
}

impl<'x, 'a> GobDeserializer<'x, 'a> {
    fn elem(&mut self, schema: &'static Schema, wire: i64) -> GobDeserializer<'_, 'a> {
        GobDeserializer {
            dec: self.dec,
            schema,
            wire,
            r: self.r,
        }
    }

    /// `IntOrString` as its Type says: the number or the string.
    fn int_or_string<'de, V: serde::de::Visitor<'de>>(
        self,
        visitor: V,
    ) -> std::result::Result<V::Value, DeError> {
        let Schema::Struct(fields) = &INT_OR_STRING_FIELDS else {
            unreachable!("IntOrString is a struct")
        };
        let plan = self.dec.compiled(fields, self.wire)?;
        let (mut ty, mut int, mut text) = (0, 0, "");
        let mut index: Option<usize> = None;
        loop {
            let delta = self.r.uint()?;
            if delta == 0 {
                break;
            }
            let i = next_field(index, delta)?;
            index = Some(i);
            let &(fid, local) = plan
                .fields
                .get(i)
                .ok_or_else(|| GobError::Corrupt(format!("field number {i} out of range")))?;
            match local.map(|f| f.go) {
                Some("Type") => ty = self.r.int()?,
                Some("IntVal") => int = self.r.int()?,
                Some("StrVal") => text = self.r.str()?,
                _ => self.dec.skip(fid, self.r, 0)?,
            }
        }
        if ty == 1 {
            visitor.visit_str(text)
        } else {
            visitor.visit_i64(int)
        }
    }
}

impl<'de, 'a: 'de> serde::Deserializer<'de> for GobDeserializer<'_, 'a> {
    type Error = DeError;

    fn deserialize_any<V: serde::de::Visitor<'de>>(
        mut self,
        visitor: V,
    ) -> std::result::Result<V::Value, DeError> {
        match self.schema {
            Schema::Str => visitor.visit_str(self.r.str()?),
            Schema::Int => visitor.visit_i64(self.r.int()?),
            Schema::Uint => visitor.visit_u64(self.r.uint()?),
            Schema::Bool => visitor.visit_bool(self.r.uint()? != 0),
            Schema::RawJson => {
                let bytes = self.r.bytes()?;
                let mut json = serde_json::Deserializer::from_slice(bytes);
                let value = serde::Deserializer::deserialize_any(&mut json, visitor)
                    .map_err(|e| DeError::Model(e.to_string()))?;
                json.end().map_err(|e| DeError::Model(e.to_string()))?;
                Ok(value)
            }
            Schema::IntOrString => self.int_or_string(visitor),
            Schema::Struct(fields) => {
                let plan = self.dec.compiled(fields, self.wire)?;
                visitor.visit_map(StructAccess {
                    de: self,
                    plan,
                    index: None,
                    embedded: None,
                    pending: None,
                })
            }
            Schema::Slice(elem_schema, _) => {
                let elem = match self.dec.types.get(self.wire) {
                    Some(WireType::Slice { elem } | WireType::Array { elem }) => *elem,
                    _ => return Err(GobError::UndefinedType(self.wire).into()),
                };
                let left = self.r.count()?;
                visitor.visit_seq(SeqAccess {
                    de: self.elem(elem_schema, elem),
                    left,
                })
            }
            Schema::Map(elem_schema, _) => {
                let elem = match self.dec.types.get(self.wire) {
                    Some(WireType::Map { elem, .. }) => *elem,
                    _ => return Err(GobError::UndefinedType(self.wire).into()),
                };
                let left = self.r.count()?;
                visitor.visit_map(MapAccess {
                    de: self.elem(elem_schema, elem),
                    left,
                })
            }
            Schema::Charged(_, inner) => {
                let wire = self.wire;
                self.elem(inner, wire).deserialize_any(visitor)
            }
        }
    }

    fn deserialize_option<V: serde::de::Visitor<'de>>(
        self,
        visitor: V,
    ) -> std::result::Result<V::Value, DeError> {
        // Gob sends no nil and no zero value: a present field is `Some`.
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> std::result::Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

/// The fields of a struct, under their JSON names; an embedded struct's
/// fields (an empty JSON name) appear in their parent.
struct StructAccess<'x, 'a> {
    de: GobDeserializer<'x, 'a>,
    plan: Arc<Plan>,
    index: Option<usize>,
    /// Inside an embedded struct: its plan and field number.
    embedded: Option<(Arc<Plan>, Option<usize>)>,
    /// The field whose key was just given: its schema and remote type.
    pending: Option<(&'static Schema, i64)>,
}

impl StructAccess<'_, '_> {
    /// The next field present on the wire that the schema has.
    fn next_field(&mut self) -> Result<Option<&'static Field>> {
        loop {
            let (plan, index) = match &mut self.embedded {
                Some((plan, index)) => (plan.clone(), index),
                None => (self.plan.clone(), &mut self.index),
            };
            let delta = self.de.r.uint()?;
            if delta == 0 {
                if self.embedded.take().is_some() {
                    continue;
                }
                return Ok(None);
            }
            let i = next_field(*index, delta)?;
            *index = Some(i);
            let &(fid, local) = plan
                .fields
                .get(i)
                .ok_or_else(|| GobError::Corrupt(format!("field number {i} out of range")))?;
            match local {
                None => self.de.dec.skip(fid, self.de.r, 0)?,
                Some(f) => match f.schema {
                    Schema::Struct(fields) if f.json.is_empty() && self.embedded.is_none() => {
                        self.embedded = Some((self.de.dec.compiled(fields, fid)?, None));
                    }
                    schema => {
                        self.pending = Some((schema, fid));
                        return Ok(Some(f));
                    }
                },
            }
        }
    }
}

impl<'de, 'a: 'de> serde::de::MapAccess<'de> for StructAccess<'_, 'a> {
    type Error = DeError;

    fn next_key_seed<K: serde::de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> std::result::Result<Option<K::Value>, DeError> {
        match self.next_field()? {
            None => Ok(None),
            Some(f) => seed
                .deserialize(serde::de::value::StrDeserializer::<DeError>::new(f.json))
                .map(Some),
        }
    }

    fn next_value_seed<V: serde::de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> std::result::Result<V::Value, DeError> {
        let (schema, wire) = self
            .pending
            .take()
            .ok_or_else(|| DeError::Model("value without a key".into()))?;
        seed.deserialize(self.de.elem(schema, wire))
    }
}

struct SeqAccess<'x, 'a> {
    de: GobDeserializer<'x, 'a>,
    left: usize,
}

impl<'de, 'a: 'de> serde::de::SeqAccess<'de> for SeqAccess<'_, 'a> {
    type Error = DeError;

    fn next_element_seed<T: serde::de::DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> std::result::Result<Option<T::Value>, DeError> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        let (schema, wire) = (self.de.schema, self.de.wire);
        seed.deserialize(self.de.elem(schema, wire)).map(Some)
    }
    // No size hint: the model grows as elements arrive.
}

struct MapAccess<'x, 'a> {
    de: GobDeserializer<'x, 'a>,
    left: usize,
}

impl<'de, 'a: 'de> serde::de::MapAccess<'de> for MapAccess<'_, 'a> {
    type Error = DeError;

    fn next_key_seed<K: serde::de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> std::result::Result<Option<K::Value>, DeError> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        let key = self.de.r.str()?;
        seed.deserialize(serde::de::value::StrDeserializer::<DeError>::new(key))
            .map(Some)
    }

    fn next_value_seed<V: serde::de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> std::result::Result<V::Value, DeError> {
        let (schema, wire) = (self.de.schema, self.de.wire);
        seed.deserialize(self.de.elem(schema, wire))
    }
}

static INT_OR_STRING_FIELDS: Schema = Schema::Struct(&[
    Field {
        go: "Type",
        json: "type",
        schema: &Schema::Int,
    },
    Field {
        go: "IntVal",
        json: "intVal",
        schema: &Schema::Int,
    },
    Field {
        go: "StrVal",
        json: "strVal",
        schema: &Schema::Str,
    },
]);

/// A request's body as it arrived.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// A nil interface (`new(any)`).
    Nil,
    /// An interface holding a registered type: its name, remote type id and
    /// the value's bytes.
    Interface {
        name: String,
        type_id: i64,
        value: Vec<u8>,
    },
    /// A value that is not an interface (remote type id and bytes).
    Plain { type_id: i64, value: Vec<u8> },
}

/// The `rpc.Request` header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Header {
    pub service_method: String,
    pub seq: u64,
}

/// One complete request: its header, and the body or why it is unreadable.
#[derive(Debug)]
pub struct RawRequest {
    pub header: Header,
    pub body: std::result::Result<Body, GobError>,
}

enum StreamState {
    Header,
    Body(Header),
    /// Inside an interface body, between its name and its value: type
    /// definitions may follow, in the same message or in later ones.
    InterfaceTypes {
        header: Header,
        name: String,
    },
}

/// Splits the client→server gob stream of one net/rpc connection into
/// requests, one message at a time.
pub struct RequestStream {
    pub values: ValueDecoder,
    phase: StreamState,
}

static REQUEST_FIELDS: Schema = Schema::Struct(&[
    Field {
        go: "ServiceMethod",
        json: "ServiceMethod",
        schema: &Schema::Str,
    },
    Field {
        go: "Seq",
        json: "Seq",
        schema: &Schema::Uint,
    },
]);

impl Default for RequestStream {
    fn default() -> Self {
        Self::new()
    }
}

impl RequestStream {
    pub fn new() -> Self {
        RequestStream {
            values: ValueDecoder::default(),
            phase: StreamState::Header,
        }
    }

    /// Feeds one message body (without its length prefix). Returns a request
    /// once its body is complete. `Err` means the header could not be read;
    /// the stream stays usable for the next request.
    pub fn push(&mut self, msg: &[u8]) -> Result<Option<RawRequest>> {
        let phase = std::mem::replace(&mut self.phase, StreamState::Header);
        match phase {
            StreamState::Header => {
                let mut r = Reader::new(msg);
                let id = r.int()?;
                if id < 0 {
                    self.define_only(defined_id(id)?, &mut r)?;
                    return Ok(None);
                }
                let header = self.read_header(id, &mut r)?;
                self.phase = StreamState::Body(header);
                Ok(None)
            }
            StreamState::Body(header) => {
                let mut r = Reader::new(msg);
                let body = match self.read_body_start(&mut r) {
                    Ok(BodyStart::TypeDefinition) => {
                        self.phase = StreamState::Body(header);
                        return Ok(None);
                    }
                    Ok(BodyStart::Done(body)) => Ok(body),
                    Ok(BodyStart::Interface(name)) => {
                        return Ok(self.interface_types(header, name, &mut r));
                    }
                    Err(e) => Err(e),
                };
                Ok(Some(RawRequest { header, body }))
            }
            StreamState::InterfaceTypes { header, name } => {
                let mut r = Reader::new(msg);
                Ok(self.interface_types(header, name, &mut r))
            }
        }
    }

    /// Drops a message that was too large to read: the request it belongs
    /// to (or the header it was meant to be) is finished, and its header
    /// returned to answer with an error.
    pub fn refuse_message(&mut self) -> Header {
        match std::mem::replace(&mut self.phase, StreamState::Header) {
            StreamState::Header => Header::default(),
            StreamState::Body(header) | StreamState::InterfaceTypes { header, .. } => header,
        }
    }

    fn define_only(&mut self, id: i64, r: &mut Reader<'_>) -> Result<()> {
        self.values.define(id, r)?;
        if !r.is_empty() {
            return Err(GobError::Corrupt("extra data in buffer".into()));
        }
        Ok(())
    }

    fn read_header(&mut self, id: i64, r: &mut Reader<'_>) -> Result<Header> {
        let start = r.pos;
        self.values
            .check(&REQUEST_FIELDS, id, r, r.buf.len() - start)?;
        let mut again = Reader::new(&r.buf[start..r.pos]);
        #[derive(serde::Deserialize)]
        struct Fields {
            #[serde(rename = "ServiceMethod", default)]
            service_method: String,
            #[serde(rename = "Seq", default)]
            seq: u64,
        }
        let fields: Fields = serde::Deserialize::deserialize(self.values.deserializer(
            &REQUEST_FIELDS,
            id,
            &mut again,
        ))
        .map_err(|e| match e {
            DeError::Gob(e) => e,
            DeError::Model(m) => GobError::Mismatch(m),
        })?;
        Ok(Header {
            service_method: fields.service_method,
            seq: fields.seq,
        })
    }

    fn read_body_start(&mut self, r: &mut Reader<'_>) -> Result<BodyStart> {
        let id = r.int()?;
        if id < 0 {
            self.define_only(defined_id(id)?, r)?;
            return Ok(BodyStart::TypeDefinition);
        }
        if !self.values.types.is_struct(id) && r.uint()? != 0 {
            return Err(GobError::Corrupt("non-zero delta for singleton".into()));
        }
        if id == ids::INTERFACE {
            let name = String::from_utf8(r.bytes()?.to_vec())
                .map_err(|_| GobError::Corrupt("interface name is not UTF-8".into()))?;
            if name.is_empty() {
                return Ok(BodyStart::Done(Body::Nil));
            }
            return Ok(BodyStart::Interface(name));
        }
        // Checks the value is well-formed before anyone decodes it.
        let start = r.rest();
        self.values.skip(id, r, 0)?;
        let used = start.len() - r.rest().len();
        Ok(BodyStart::Done(Body::Plain {
            type_id: id,
            value: start[..used].to_vec(),
        }))
    }

    /// decoder.go, `decodeTypeSequence(isInterface = true)`: definitions,
    /// then the concrete type id and the byte-counted value.
    fn interface_types(
        &mut self,
        header: Header,
        name: String,
        r: &mut Reader<'_>,
    ) -> Option<RawRequest> {
        let step = (|| -> Result<Option<Body>> {
            while !r.is_empty() {
                let id = r.int()?;
                if id < 0 {
                    self.values.define(defined_id(id)?, r)?;
                    // A delimited value's count may follow a definition.
                    if !r.is_empty() {
                        r.uint()?;
                    }
                    continue;
                }
                let value = r.bytes()?.to_vec();
                return Ok(Some(Body::Interface {
                    name: name.clone(),
                    type_id: id,
                    value,
                }));
            }
            Ok(None)
        })();
        match step {
            Ok(None) => {
                self.phase = StreamState::InterfaceTypes { header, name };
                None
            }
            Ok(Some(body)) => Some(RawRequest {
                header,
                body: Ok(body),
            }),
            Err(e) => Some(RawRequest {
                header,
                body: Err(e),
            }),
        }
    }
}

enum BodyStart {
    TypeDefinition,
    Interface(String),
    Done(Body),
}

/// Splits a byte stream into gob messages: the length prefix and the body.
/// `Ok(None)` when `buf` does not hold a whole message yet.
pub fn split_message(buf: &[u8]) -> Result<Option<(usize, usize)>> {
    let mut r = Reader::new(buf);
    let len = match r.uint() {
        Ok(len) => len,
        Err(GobError::Truncated) => return Ok(None),
        Err(e) => return Err(e),
    };
    if len == 0 {
        return Err(GobError::Corrupt(format!("invalid message length {len}")));
    }
    let start = r.pos;
    if len > MAX_MESSAGE as u64 {
        return Err(GobError::TooLarge { header: start, len });
    }
    let len = len as usize;
    if buf.len() - start < len {
        return Ok(None);
    }
    Ok(Some((start, len)))
}

/// The largest message accepted; a whole Rollout is tens of KB.
pub const MAX_MESSAGE: usize = crate::transport::MAX_REQUEST_BYTES;

/// The most fields one struct type may have; Kubernetes' largest have a
/// few dozen.
const MAX_FIELDS: usize = 1024;

/// The most type definitions one stream may make; the controller's Rollout
/// needs about 60, and each definition is kept for the stream's life.
const MAX_TYPES: usize = 4096;

#[cfg(test)]
mod tests {
    use super::*;

    /// `u64::MAX` as a gob unsigned integer: byte count -8, then 8 bytes.
    const UINT_MAX: [u8; 9] = [0xF8, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];

    fn two_int_struct() -> ValueDecoder {
        let mut values = ValueDecoder::default();
        values
            .types
            .define(
                65,
                WireType::Struct {
                    name: "T".into(),
                    fields: vec![("A".into(), ids::INT), ("B".into(), ids::INT)],
                },
            )
            .unwrap();
        values
    }

    static TWO_INTS: Schema = Schema::Struct(&[
        Field {
            go: "A",
            json: "a",
            schema: &Schema::Int,
        },
        Field {
            go: "B",
            json: "b",
            schema: &Schema::Int,
        },
    ]);

    #[test]
    fn a_type_definition_of_i64_min_is_corrupt_not_a_panic() {
        // `i64::MIN` as a gob int is `u64::MAX` on the wire.
        let mut r = Reader::new(&UINT_MAX);
        assert_eq!(r.int().unwrap(), i64::MIN);
        let mut stream = RequestStream::new();
        let error = stream.push(&UINT_MAX).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("gob: invalid type id {}", i64::MIN)
        );
    }

    #[test]
    fn a_type_definition_of_i64_min_inside_a_body_is_corrupt() {
        let mut stream = RequestStream::new();
        stream.phase = StreamState::Body(Header::default());
        let raw = stream.push(&UINT_MAX).unwrap().expect("a request");
        assert_eq!(
            raw.body.unwrap_err().to_string(),
            format!("gob: invalid type id {}", i64::MIN)
        );
        stream.phase = StreamState::InterfaceTypes {
            header: Header::default(),
            name: "X".into(),
        };
        let raw = stream.push(&UINT_MAX).unwrap().expect("a request");
        assert_eq!(
            raw.body.unwrap_err().to_string(),
            format!("gob: invalid type id {}", i64::MIN)
        );
    }

    #[test]
    fn a_huge_field_delta_is_an_error_when_decoding_and_skipping() {
        // Field B (delta 2), then a delta of u64::MAX: in Go a negative
        // delta; wrapping would step back to field A.
        let mut bytes = vec![0x02, 0x02];
        bytes.extend_from_slice(&UINT_MAX);
        bytes.extend_from_slice(&[0x02, 0x00]);
        let mut values = two_int_struct();
        let error = values
            .check(&TWO_INTS, 65, &mut Reader::new(&bytes), bytes.len())
            .unwrap_err();
        assert_eq!(error.to_string(), "gob: negative field delta -1");
        let error = values.skip(65, &mut Reader::new(&bytes), 0).unwrap_err();
        assert_eq!(error.to_string(), "gob: negative field delta -1");
    }

    #[test]
    fn a_delta_past_the_last_field_is_out_of_range_not_an_overflow() {
        // i64::MAX as the second delta: positive, but index + delta overflows
        // or lands past the struct.
        let mut bytes = vec![
            0x02, 0x02, 0xF8, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
        ];
        bytes.extend_from_slice(&[0x02, 0x00]);
        let mut values = two_int_struct();
        let error = values
            .check(&TWO_INTS, 65, &mut Reader::new(&bytes), bytes.len())
            .unwrap_err();
        assert!(
            error.to_string().contains("out of range") || error.to_string().contains("overflow"),
            "{error}"
        );
        let error = values.skip(65, &mut Reader::new(&bytes), 0).unwrap_err();
        assert!(
            error.to_string().contains("out of range") || error.to_string().contains("overflow"),
            "{error}"
        );
    }

    /// A struct definition `-65` named "T" with the given fieldTypes
    /// (each already encoded).
    fn struct_definition(count: usize, field: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0xFF, 0x81, 0x03, 0x01, 0x01, 0x01, b'T', 0x00, 0x01];
        assert!(count < 0x80);
        bytes.push(count as u8);
        for _ in 0..count {
            bytes.extend_from_slice(field);
        }
        bytes.extend_from_slice(&[0x00, 0x00]);
        bytes
    }

    #[test]
    fn struct_definitions_with_empty_or_too_many_fields_are_refused() {
        // {Name: "A", Id: 2 (int)} is a field; {} and {Name: "A"} are not.
        let good = [0x01, 0x01, b'A', 0x01, 0x04, 0x00];
        let mut stream = RequestStream::new();
        assert!(stream.push(&struct_definition(3, &good)).unwrap().is_none());
        for bad in [&[0x00][..], &[0x01, 0x01, b'A', 0x00], &[0x02, 0x04, 0x00]] {
            let error = RequestStream::new()
                .push(&struct_definition(3, bad))
                .unwrap_err();
            assert_eq!(error.to_string(), "gob: bad fieldType");
        }
        // A count past the limit is refused before any field is read.
        let mut bytes = vec![0xFF, 0x81, 0x03, 0x01, 0x01, 0x01, b'T', 0x00, 0x01];
        bytes.extend_from_slice(&[0xFE, 0x04, 0x01]); // 1025
        bytes.extend(std::iter::repeat_n(0u8, 1100));
        let error = RequestStream::new().push(&bytes).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("gob: struct of 1025 fields, more than {MAX_FIELDS}")
        );
    }

    #[test]
    fn a_huge_delta_in_a_type_definition_is_an_error() {
        // A wireType whose first field delta is u64::MAX.
        let mut bytes = UINT_MAX.to_vec();
        bytes.push(0x00);
        let error = read_wire_type(&mut Reader::new(&bytes)).unwrap_err();
        assert_eq!(error.to_string(), "gob: negative field delta -1");
    }

    #[test]
    fn a_count_with_an_invalid_first_element_is_an_error() {
        // A slice declaring as many elements as there are bytes left, the
        // first one invalid (tests/hostile_input.rs counts its allocations).
        let mut values = ValueDecoder::default();
        values
            .types
            .define(66, WireType::Slice { elem: ids::STRING })
            .unwrap();
        static STRINGS: Schema = Schema::Slice(&Schema::Str, 24);
        let mut bytes = vec![0xFC, 0x00, 0x0F, 0x42, 0x40]; // 1_000_000
        // 0xF7: a byte count of 9, more than a u64 holds.
        bytes.extend(std::iter::repeat_n(0xF7, 1_000_000));
        let error = values
            .check(&STRINGS, 66, &mut Reader::new(&bytes), bytes.len())
            .unwrap_err();
        assert_eq!(error, GobError::BadUint);
    }
}
