//! Reading Go `encoding/gob` as the controller writes it, straight into the
//! shapes this plugin needs.
//!
//! One [`TypeTable`] per stream holds the remote type definitions. A value is
//! decoded against a static [`Schema`] (the fields the model has); the field
//! mapping from a remote struct id onto a schema is compiled once per stream
//! and cached, and every field the schema lacks is skipped as it is read.
//! Each message is looked at once, so a request split over hundreds of
//! messages decodes in linear time.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value};

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
        String::from_utf8(self.bytes()?.to_vec())
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
/// types to fill the model (`crate::model`). The output is the model's JSON.
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
    Slice(&'static Schema),
    /// `map[string]T`.
    Map(&'static Schema),
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
            Schema::Slice(_) => "slice",
            Schema::Map(_) => "map[string]",
        }
    }
}

/// One field of a [`Schema::Struct`]: the Go name on the wire and the JSON
/// name in the output.
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
pub struct ValueDecoder {
    pub types: TypeTable,
    plans: HashMap<(usize, i64), Arc<Plan>>,
    /// Values the current request may still produce (see [`MAX_VALUES`]).
    values_left: usize,
}

impl Default for ValueDecoder {
    fn default() -> Self {
        ValueDecoder {
            types: TypeTable::default(),
            plans: HashMap::new(),
            values_left: MAX_VALUES,
        }
    }
}

/// The most values (structs, list elements, map entries, scalars) one
/// request may decode into. Each costs about a hundred bytes of model
/// however few bytes it took on the wire (an empty step is one byte), so
/// this, not the request's size, bounds that overhead (about 60 MB at most,
/// measured in tests/hostile_input.rs). The
/// controller's real requests hold a few hundred.
pub const MAX_VALUES: usize = 100_000;

impl ValueDecoder {
    /// Starts a new request's value budget.
    pub fn begin_request(&mut self) {
        self.values_left = MAX_VALUES;
    }

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

    fn compatible(&self, schema: &Schema, wire: i64) -> bool {
        match schema {
            Schema::Str => wire == ids::STRING,
            Schema::Int => wire == ids::INT,
            Schema::Uint => wire == ids::UINT,
            Schema::Bool => wire == ids::BOOL,
            Schema::RawJson => wire == ids::BYTES,
            Schema::IntOrString | Schema::Struct(_) => self.types.is_struct(wire),
            Schema::Slice(_) => matches!(
                self.types.get(wire),
                Some(WireType::Slice { .. } | WireType::Array { .. })
            ),
            Schema::Map(_) => matches!(
                self.types.get(wire),
                Some(WireType::Map {
                    key: ids::STRING,
                    ..
                })
            ),
        }
    }

    /// Decodes a value of remote type `wire` as `schema`.
    pub fn decode(
        &mut self,
        schema: &'static Schema,
        wire: i64,
        r: &mut Reader<'_>,
        depth: usize,
    ) -> Result<Value> {
        if depth > MAX_DEPTH {
            return Err(GobError::Corrupt("value nested too deeply".into()));
        }
        self.values_left = self.values_left.checked_sub(1).ok_or_else(|| {
            GobError::Corrupt(format!("request holds more than {MAX_VALUES} values"))
        })?;
        if !self.compatible(schema, wire) {
            return Err(GobError::Mismatch(format!(
                "wrong type: got {}, want {}",
                self.types.describe(wire),
                schema.kind()
            )));
        }
        Ok(match schema {
            Schema::Str => Value::String(r.string()?),
            Schema::Int => Value::from(r.int()?),
            Schema::Uint => Value::from(r.uint()?),
            Schema::Bool => Value::Bool(r.uint()? != 0),
            Schema::RawJson => {
                let bytes = r.bytes()?;
                serde_json::from_slice(bytes).map_err(|e| {
                    GobError::Mismatch(format!("json.RawMessage is not valid JSON: {e}"))
                })?
            }
            Schema::IntOrString => {
                let object = self.decode(&INT_OR_STRING_FIELDS, wire, r, depth + 1)?;
                let is_string = object.get("type").and_then(Value::as_i64) == Some(1);
                if is_string {
                    object.get("strVal").cloned().unwrap_or_else(|| "".into())
                } else {
                    object.get("intVal").cloned().unwrap_or_else(|| 0.into())
                }
            }
            Schema::Struct(fields) => {
                let plan = self.plan(fields, wire)?;
                let mut out = Map::new();
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
                        Some(f) => {
                            let v = self.decode(f.schema, fid, r, depth + 1)?;
                            out.insert(f.json.to_string(), v);
                        }
                        None => self.skip(fid, r, depth + 1)?,
                    }
                }
                Value::Object(out)
            }
            Schema::Slice(elem_schema) => {
                let elem = match self.types.get(wire) {
                    Some(WireType::Slice { elem } | WireType::Array { elem }) => *elem,
                    _ => return Err(GobError::UndefinedType(wire)),
                };
                let n = r.count()?;
                // Grown as elements arrive: a declared count costs nothing
                // until its elements are actually there.
                let mut out = Vec::new();
                for _ in 0..n {
                    out.push(self.decode(elem_schema, elem, r, depth + 1)?);
                }
                Value::Array(out)
            }
            Schema::Map(elem_schema) => {
                let elem = match self.types.get(wire) {
                    Some(WireType::Map { elem, .. }) => *elem,
                    _ => return Err(GobError::UndefinedType(wire)),
                };
                let n = r.count()?;
                let mut out = Map::new();
                for _ in 0..n {
                    let key = r.string()?;
                    let v = self.decode(elem_schema, elem, r, depth + 1)?;
                    out.insert(key, v);
                }
                Value::Object(out)
            }
        })
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
        self.values.begin_request();
        let v = self.values.decode(&REQUEST_FIELDS, id, r, 0)?;
        Ok(Header {
            service_method: v
                .get("ServiceMethod")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            seq: v.get("Seq").and_then(Value::as_u64).unwrap_or_default(),
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
            .decode(&TWO_INTS, 65, &mut Reader::new(&bytes), 0)
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
            .decode(&TWO_INTS, 65, &mut Reader::new(&bytes), 0)
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
        static STRINGS: Schema = Schema::Slice(&Schema::Str);
        let mut bytes = vec![0xFC, 0x00, 0x0F, 0x42, 0x40]; // 1_000_000
        // 0xF7: a byte count of 9, more than a u64 holds.
        bytes.extend(std::iter::repeat_n(0xF7, 1_000_000));
        let error = values
            .decode(&STRINGS, 66, &mut Reader::new(&bytes), 0)
            .unwrap_err();
        assert_eq!(error, GobError::BadUint);
    }
}
