//! Spreadsheets through a mapping (`pulse import --format table --mapping MAPPING.toml`,
//! `[[ingest.exports]] format = "table"`): `.csv` (UTF-8 with or without a BOM, or GB18030/GBK)
//! and `.xlsx` (also `.xlsm`, `.xlsb`, `.xls`, `.ods`, read by `calamine`).
//!
//! Each row becomes a canonical event as a JSON object, which then goes through exactly what an
//! NDJSON line goes through ([`crate::event::parse_json_line`], the
//! [`crate::lake::events::EventWriter`]'s dedupe and quarantine). A row that cannot be mapped (a
//! status not in the map, an empty required cell, an unparseable or non-existent local time, an
//! amount with too many decimals) is quarantined with the file, the sheet, the row number (as a
//! spreadsheet shows it: 1-based, blank rows counted) and the reason; the quarantined copy is
//! the row's cells by header, personal columns left out.
//!
//! The mapping file (see `config/mappings/` and the README for examples):
//!
//! - `[table]` `sheet` (xlsx: the sheet's name; default the first sheet), `header_row` (1-based
//!   row holding the column names; default 1; rows above it are ignored), `encoding` (`auto`,
//!   the default: UTF-8 when the bytes are UTF-8, else GB18030, which covers GBK; `utf-8`;
//!   `gb18030`; CSV only), `timezone` (required: the IANA zone of times without an offset),
//!   `timestamp_format` (a chrono format, default `%Y-%m-%d %H:%M:%S`; a date-only format means
//!   midnight; RFC 3339 with an offset and Excel date cells are always accepted).
//! - `[columns]`: each canonical field (SPEC §2, except `properties`) is a column header
//!   (`member_id = "用户ID"`), or a table: `{ value = "xiaoe" }` a constant; `{ column = "订单状态",
//!   map = { "已支付" = "purchase" } }` a column whose values are translated (a value not in the
//!   map quarantines the row; not for times and amounts); `{ column = "实付金额", scale = 100 }` an
//!   amount (only `amount_minor`): a decimal number times `scale` (a power of ten, 1 to 10⁹;
//!   default 1), exact, with `,` as thousands separator and an optional leading `¥`, `￥` or
//!   `$`. `source`, `member_id`, `event_type` and `occurred_at` are required; `community_id`
//!   may be left to `--community` (or the export folder's `community`); without `event_id` a
//!   row's id is a hash of all its cells (so identical rows are one event, and the id does not
//!   change when the mapping does).
//! - `[properties]`: `key = "column header"`, copied as text into the event's `properties`.
//!
//! A mapping naming a column of personal data (by its header or its property key: the keys of
//! [`crate::event::is_personal_key`], and Chinese headers such as 姓名, 昵称, 手机号, 邮箱, 地址) is
//! refused when loaded, so `pulse check-config` refuses it too.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{NaiveDate, NaiveDateTime, TimeZone};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::config::Timezone;
use crate::error::{Error, Result};
use crate::event::EventType;
use crate::lake::events::{EventWriter, ImportStats, WriterOptions};
use crate::lake::Lake;

/// Largest table file read (CSV or workbook), in bytes.
pub const MAX_TABLE_BYTES: u64 = 512 << 20;

/// A mapping file: how the rows of a table become canonical events.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    pub table: TableOptions,
    pub columns: Columns,
    /// Property key → column header, copied into `properties` as text.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

/// `[table]`: where the rows are and how to read their cells.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableOptions {
    /// xlsx: the sheet to read (default: the first).
    #[serde(default)]
    pub sheet: Option<String>,
    /// The 1-based row holding the column names.
    #[serde(default = "default_header_row")]
    pub header_row: u32,
    /// The encoding of a CSV file.
    #[serde(default)]
    pub encoding: Encoding,
    /// The timezone of times without an offset.
    pub timezone: Timezone,
    /// The chrono format of times without an offset.
    #[serde(default = "default_timestamp_format")]
    pub timestamp_format: String,
}

fn default_header_row() -> u32 {
    1
}
fn default_timestamp_format() -> String {
    "%Y-%m-%d %H:%M:%S".into()
}

/// `[table] encoding`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum Encoding {
    /// UTF-8 when the bytes are valid UTF-8, else GB18030 (a superset of GBK).
    #[default]
    #[serde(rename = "auto")]
    Auto,
    #[serde(rename = "utf-8", alias = "utf8")]
    Utf8,
    #[serde(rename = "gb18030", alias = "gbk")]
    Gb18030,
}

/// `[columns]`: where each canonical field comes from.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Columns {
    pub event_id: Option<Field>,
    pub source: Option<Field>,
    pub community_id: Option<Field>,
    pub member_id: Option<Field>,
    pub event_type: Option<Field>,
    pub occurred_at: Option<Field>,
    pub received_at: Option<Field>,
    pub content_id: Option<Field>,
    pub parent_id: Option<Field>,
    pub target_member_id: Option<Field>,
    pub title: Option<Field>,
    pub body: Option<Field>,
    pub amount_minor: Option<Field>,
    pub currency: Option<Field>,
}

/// One field's origin: a column header, or a table (`{ value = … }`, `{ column = …, map = …,
/// scale = … }`).
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    /// A constant (text; an integer for `amount_minor`).
    Value(String),
    Column {
        header: String,
        map: Option<BTreeMap<String, String>>,
        scale: Option<u64>,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FieldTable {
    column: Option<String>,
    value: Option<toml::Value>,
    map: Option<BTreeMap<String, String>>,
    scale: Option<u64>,
}

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        match toml::Value::deserialize(d)? {
            toml::Value::String(header) => Ok(Field::Column {
                header,
                map: None,
                scale: None,
            }),
            table @ toml::Value::Table(_) => {
                let t = FieldTable::deserialize(table).map_err(D::Error::custom)?;
                match (t.column, t.value) {
                    (Some(_), Some(_)) => Err(D::Error::custom(
                        "give either `column` or `value`, not both",
                    )),
                    (None, None) => Err(D::Error::custom(
                        "needs `column = \"header\"` or `value = …`",
                    )),
                    (None, Some(value)) => {
                        if t.map.is_some() || t.scale.is_some() {
                            return Err(D::Error::custom(
                                "`map` and `scale` apply to a `column`, not to a `value`",
                            ));
                        }
                        match value {
                            toml::Value::String(s) => Ok(Field::Value(s)),
                            toml::Value::Integer(n) => Ok(Field::Value(n.to_string())),
                            other => Err(D::Error::custom(format!(
                                "`value` must be text or an integer, not {}",
                                other.type_str()
                            ))),
                        }
                    }
                    (Some(header), None) => Ok(Field::Column {
                        header,
                        map: t.map,
                        scale: t.scale,
                    }),
                }
            }
            other => Err(D::Error::custom(format!(
                "expected a column header (text) or a table such as {{ value = \"…\" }}, not {}",
                other.type_str()
            ))),
        }
    }
}

/// Chinese column headers that hold personal data (matched as parts of a header).
const PERSONAL_HEADER_PARTS: &[&str] = &[
    "姓名",
    "名字",
    "昵称",
    "用户名",
    "真名",
    "手机",
    "电话",
    "邮箱",
    "电子邮件",
    "地址",
    "微信号",
    "身份证",
    "生日",
    "出生",
    "头像",
];

/// Whether a column header or property key names personal data.
pub fn is_personal_header(header: &str) -> bool {
    crate::event::is_personal_key(header)
        || PERSONAL_HEADER_PARTS.iter().any(|p| header.contains(p))
}

impl Columns {
    /// `(name, field)` in the SPEC §2 column order.
    fn fields(&self) -> [(&'static str, Option<&Field>); 14] {
        [
            ("event_id", self.event_id.as_ref()),
            ("source", self.source.as_ref()),
            ("community_id", self.community_id.as_ref()),
            ("member_id", self.member_id.as_ref()),
            ("event_type", self.event_type.as_ref()),
            ("occurred_at", self.occurred_at.as_ref()),
            ("received_at", self.received_at.as_ref()),
            ("content_id", self.content_id.as_ref()),
            ("parent_id", self.parent_id.as_ref()),
            ("target_member_id", self.target_member_id.as_ref()),
            ("title", self.title.as_ref()),
            ("body", self.body.as_ref()),
            ("amount_minor", self.amount_minor.as_ref()),
            ("currency", self.currency.as_ref()),
        ]
    }
}

const REQUIRED: [&str; 4] = ["source", "member_id", "event_type", "occurred_at"];
const TIMES: [&str; 2] = ["occurred_at", "received_at"];

impl Mapping {
    /// Read and validate a mapping file; errors name the file, the key and the problem.
    pub fn load(path: &Path) -> Result<Mapping> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Config {
            file: path.to_path_buf(),
            key: String::new(),
            message: format!("cannot read the mapping: {e}"),
        })?;
        Mapping::from_toml(&text, path)
    }

    /// Parse and validate mapping text; `file` names it in errors.
    pub fn from_toml(text: &str, file: &Path) -> Result<Mapping> {
        let de = toml::Deserializer::new(text);
        let mapping: Mapping = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            Error::Config {
                file: file.to_path_buf(),
                key: if key == "." { String::new() } else { key },
                message: e.into_inner().message().trim().to_string(),
            }
        })?;
        mapping.check().map_err(|(key, message)| Error::Config {
            file: file.to_path_buf(),
            key,
            message,
        })?;
        Ok(mapping)
    }

    /// What spans keys, checked once at load: `(dotted key, problem)`.
    fn check(&self) -> std::result::Result<(), (String, String)> {
        let t = &self.table;
        if t.header_row == 0 {
            return Err(("table.header_row".into(), "rows count from 1".into()));
        }
        if t.sheet.as_deref() == Some("") {
            return Err((
                "table.sheet".into(),
                "is empty (leave it out for the first sheet)".into(),
            ));
        }
        check_format(&t.timestamp_format).map_err(|m| ("table.timestamp_format".into(), m))?;
        for name in REQUIRED {
            let present = self
                .columns
                .fields()
                .iter()
                .any(|(n, f)| *n == name && f.is_some());
            if !present {
                return Err((format!("columns.{name}"), "is required".into()));
            }
        }
        for (name, field) in self.columns.fields() {
            let Some(field) = field else { continue };
            let key = format!("columns.{name}");
            match field {
                Field::Value(v) => {
                    if TIMES.contains(&name) {
                        return Err((key, "a time comes from a `column`, not a `value`".into()));
                    }
                    check_constant(name, v).map_err(|m| (key.clone(), m))?;
                }
                Field::Column { header, map, scale } => {
                    if header.trim().is_empty() {
                        return Err((key, "the column header is empty".into()));
                    }
                    if is_personal_header(header) {
                        return Err((key, personal(header)));
                    }
                    if scale.is_some() && name != "amount_minor" {
                        return Err((key, "`scale` applies to `amount_minor` only".into()));
                    }
                    if let Some(s) = scale {
                        if decimals(*s).is_none() {
                            return Err((
                                key,
                                format!("scale {s} is not a power of ten from 1 to 1000000000 (100: two decimals)"),
                            ));
                        }
                    }
                    if let Some(map) = map {
                        if TIMES.contains(&name) || name == "amount_minor" {
                            return Err((
                                key,
                                "`map` applies to text fields, not to times or amounts".into(),
                            ));
                        }
                        for (from, to) in map {
                            check_constant(name, to)
                                .map_err(|m| (format!("{key}.map.{from}"), m))?;
                        }
                    }
                }
            }
        }
        for (property, header) in &self.properties {
            let key = format!("properties.{property}");
            if property.trim().is_empty() {
                return Err((key, "a property key must not be empty".into()));
            }
            if is_personal_header(property) {
                return Err((key, personal(property)));
            }
            if is_personal_header(header) {
                return Err((key, personal(header)));
            }
        }
        Ok(())
    }

    /// The community of rows when `[columns] community_id` is not mapped: `fallback`.
    fn community_ok(&self, fallback: Option<&str>) -> Result<()> {
        if self.columns.community_id.is_some() {
            return Ok(());
        }
        match fallback {
            Some(c) => crate::event::check_community_id(c).map_err(Error::Usage),
            None => Err(Error::Usage(
                "the mapping has no [columns] community_id: give --community <id>".into(),
            )),
        }
    }
}

fn personal(header: &str) -> String {
    format!(
        "`{header}` holds personal data (names, phones, emails, addresses…): the lake keeps member ids only, so leave this column out of the mapping"
    )
}

/// Digits after the point that `scale` (10^d, 1 ≤ scale ≤ 10⁹) allows.
fn decimals(scale: u64) -> Option<u32> {
    (0..=9).find(|d| 10u64.pow(*d) == scale)
}

fn check_format(format: &str) -> std::result::Result<(), String> {
    use chrono::format::{Item, StrftimeItems};
    if format.trim().is_empty() {
        return Err("is empty".into());
    }
    if StrftimeItems::new(format).any(|i| matches!(i, Item::Error)) {
        return Err(format!("`{format}` is not a valid chrono format"));
    }
    Ok(())
}

/// A constant (or a `map` target) is valid for its field.
fn check_constant(field: &str, v: &str) -> std::result::Result<(), String> {
    match field {
        "event_type" => v
            .parse::<EventType>()
            .map(|_| ())
            .map_err(|_| format!("`{v}` is not an event type (SPEC §2: {})", event_types())),
        "community_id" => crate::event::check_community_id(v),
        "amount_minor" => v
            .parse::<u64>()
            .map(|_| ())
            .map_err(|_| format!("`{v}` is not a non-negative integer of minor units")),
        _ if v.is_empty() => Err("is empty".into()),
        _ => Ok(()),
    }
}

fn event_types() -> String {
    EventType::ALL
        .iter()
        .map(|t| t.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A cell as read.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Empty,
    Text(String),
    /// A number cell of a workbook.
    Number(f64),
    /// A date cell of a workbook (local time, no zone).
    Date(NaiveDateTime),
}

impl Cell {
    /// The cell as text: trimmed; numbers in their shortest decimal form (`99`, `0.1`); dates
    /// in the mapping's `timestamp_format`.
    fn text(&self, format: &str) -> String {
        match self {
            Cell::Empty => String::new(),
            Cell::Text(s) => s.trim().to_string(),
            Cell::Number(f) => number_text(*f),
            Cell::Date(d) => {
                use std::fmt::Write;
                let mut out = String::new();
                // A format a naive time cannot fill (`%z`) falls back to the default one.
                match write!(out, "{}", d.format(format)) {
                    Ok(()) => out,
                    Err(_) => d.format("%Y-%m-%d %H:%M:%S").to_string(),
                }
            }
        }
    }
}

fn number_text(f: f64) -> String {
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{}", f as i64)
    } else {
        format!("{f}")
    }
}

/// The rows of one file: the sheet read (workbooks) and `(row number, cells)`.
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub sheet: Option<String>,
    pub rows: Vec<(u64, Vec<Cell>)>,
}

fn input_error(path: &Path, message: impl Into<String>) -> Error {
    Error::Input {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

fn is_workbook(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| {
        ["xlsx", "xlsm", "xlsb", "xls", "ods"]
            .iter()
            .any(|x| e.eq_ignore_ascii_case(x))
    })
}

/// Read a table file (a workbook by its extension, else CSV); a panic inside a reader on a
/// damaged file is an input error.
pub fn read_table(path: &Path, options: &TableOptions) -> Result<Table> {
    let size = std::fs::metadata(path)
        .map_err(|e| input_error(path, format!("cannot read: {e}")))?
        .len();
    if size > MAX_TABLE_BYTES {
        return Err(input_error(
            path,
            format!("{size} bytes is larger than the {MAX_TABLE_BYTES} bytes a table may have"),
        ));
    }
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        if is_workbook(path) {
            read_workbook(path, options)
        } else {
            let bytes =
                std::fs::read(path).map_err(|e| input_error(path, format!("cannot read: {e}")))?;
            read_csv(path, &bytes, options.encoding)
        }
    }))
    .unwrap_or_else(|_| Err(input_error(path, "cannot be read (a damaged file)")))
}

fn read_workbook(path: &Path, options: &TableOptions) -> Result<Table> {
    use calamine::{Data, Reader};
    let mut book = calamine::open_workbook_auto(path)
        .map_err(|e| input_error(path, format!("not a readable workbook: {e}")))?;
    let names = book.sheet_names();
    let sheet = match &options.sheet {
        Some(s) if names.contains(s) => s.clone(),
        Some(s) => {
            return Err(input_error(
                path,
                format!("no sheet `{s}` (sheets: {})", names.join(", ")),
            ))
        }
        None => names
            .first()
            .cloned()
            .ok_or_else(|| input_error(path, "the workbook has no sheets"))?,
    };
    let range = book
        .worksheet_range(&sheet)
        .map_err(|e| input_error(path, format!("sheet `{sheet}`: {e}")))?;
    let (first_row, first_col) = range.start().unwrap_or((0, 0));
    let mut rows = Vec::with_capacity(range.height());
    for (i, r) in range.rows().enumerate() {
        // Cells left of the range are empty, so columns keep their positions.
        let mut cells = vec![Cell::Empty; first_col as usize];
        cells.extend(r.iter().map(|c| match c {
            Data::Empty => Cell::Empty,
            Data::String(s) => Cell::Text(s.clone()),
            Data::Int(n) => Cell::Text(n.to_string()),
            Data::Float(f) => Cell::Number(*f),
            Data::Bool(b) => Cell::Text(if *b { "TRUE" } else { "FALSE" }.into()),
            Data::DateTime(d) if d.is_datetime() => {
                excel_date(d).map_or_else(|| Cell::Text(number_text(d.as_f64())), Cell::Date)
            }
            Data::DateTime(d) => Cell::Number(d.as_f64()),
            Data::DateTimeIso(s) | Data::DurationIso(s) => Cell::Text(s.clone()),
            Data::Error(e) => Cell::Text(format!("{e}")),
        }));
        rows.push((first_row as u64 + i as u64 + 1, cells));
    }
    Ok(Table {
        sheet: Some(sheet),
        rows,
    })
}

/// An Excel date cell as a local date and time (to the millisecond).
fn excel_date(d: &calamine::ExcelDateTime) -> Option<NaiveDateTime> {
    let v = d.as_f64();
    if !(0.0..2_958_466.0).contains(&v) {
        return None;
    }
    let (y, mo, day, h, mi, s, ms) = d.to_ymd_hms_milli();
    NaiveDate::from_ymd_opt(y as i32, mo as u32, day as u32)?
        .and_hms_milli_opt(h as u32, mi as u32, s as u32, ms as u32)
}

/// A serial number (a date cell stored as a plain number) as a local date and time.
fn serial_date(v: f64) -> Option<NaiveDateTime> {
    excel_date(&calamine::ExcelDateTime::new(
        v,
        calamine::ExcelDateTimeType::DateTime,
        false,
    ))
}

/// Decode CSV bytes (BOM stripped) by `encoding`.
pub fn decode(path: &Path, bytes: &[u8], encoding: Encoding) -> Result<String> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let utf8 = || {
        std::str::from_utf8(bytes).map(str::to_string).map_err(|e| {
            input_error(
                path,
                format!(
                    "not valid UTF-8 at byte {} (set [table] encoding = \"gb18030\" for a GBK file)",
                    e.valid_up_to()
                ),
            )
        })
    };
    let gb = || {
        encoding_rs::GB18030
            .decode_without_bom_handling_and_without_replacement(bytes)
            .map(|s| s.into_owned())
    };
    match encoding {
        Encoding::Utf8 => utf8(),
        Encoding::Gb18030 => gb().ok_or_else(|| input_error(path, "not valid GB18030/GBK")),
        Encoding::Auto => utf8().or_else(|_| {
            gb().ok_or_else(|| input_error(path, "neither UTF-8 nor GB18030/GBK text"))
        }),
    }
}

fn read_csv(path: &Path, bytes: &[u8], encoding: Encoding) -> Result<Table> {
    let text = decode(path, bytes, encoding)?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut rows = Vec::new();
    // Line breaks inside quoted cells so far: a record's row is its line minus these.
    let mut inner_breaks = 0u64;
    for record in reader.records() {
        let record = record.map_err(|e| input_error(path, format!("not readable as CSV: {e}")))?;
        // The reader's position is where it started looking: before any blank lines it
        // skipped, which are rows of the spreadsheet too.
        let (line, byte) = record
            .position()
            .map_or((1, 0), |p| (p.line(), p.byte() as usize));
        let skipped = text.as_bytes()[byte.min(text.len())..]
            .iter()
            .take_while(|b| matches!(b, b'\r' | b'\n'))
            .filter(|b| **b == b'\n')
            .count() as u64;
        let line = line + skipped;
        rows.push((
            line.saturating_sub(inner_breaks).max(1),
            record
                .iter()
                .map(|c| {
                    if c.is_empty() {
                        Cell::Empty
                    } else {
                        Cell::Text(c.to_string())
                    }
                })
                .collect(),
        ));
        inner_breaks += record
            .iter()
            .map(|c| c.bytes().filter(|b| *b == b'\n').count() as u64)
            .sum::<u64>();
    }
    Ok(Table { sheet: None, rows })
}

/// One data row, mapped: its row number, its cells by header (personal columns left out; what
/// quarantine keeps) and the canonical event as JSON text, or the reason it cannot be one.
#[derive(Debug, Clone)]
pub struct MappedRow {
    pub row: u64,
    pub cells: String,
    pub event: std::result::Result<String, String>,
}

/// The rows of one file mapped to events; `label` names the file and sheet.
#[derive(Debug, Clone)]
pub struct MappedFile {
    pub label: String,
    pub rows: Vec<MappedRow>,
}

/// Where each mapped field is in the header.
struct Plan<'m> {
    mapping: &'m Mapping,
    community: Option<&'m str>,
    headers: Vec<String>,
    /// Field name → (field, column index or None for a constant).
    fields: Vec<(&'static str, &'m Field, Option<usize>)>,
    properties: Vec<(&'m str, usize)>,
}

impl<'m> Plan<'m> {
    fn new(
        path: &Path,
        mapping: &'m Mapping,
        community: Option<&'m str>,
        header: &[Cell],
    ) -> Result<Plan<'m>> {
        let headers: Vec<String> = header
            .iter()
            .map(|c| c.text(&mapping.table.timestamp_format))
            .collect();
        let find = |h: &str| -> Result<usize> {
            let h = h.trim();
            let mut at = headers.iter().enumerate().filter(|(_, x)| *x == h);
            match (at.next(), at.next()) {
                (Some((i, _)), None) => Ok(i),
                (Some(_), Some(_)) => Err(input_error(
                    path,
                    format!(
                        "column `{h}` appears twice in header row {}",
                        mapping.table.header_row
                    ),
                )),
                (None, _) => Err(input_error(
                    path,
                    format!(
                        "no column `{h}` in header row {} (columns: {})",
                        mapping.table.header_row,
                        headers
                            .iter()
                            .filter(|h| !h.is_empty())
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )),
            }
        };
        let mut fields = Vec::new();
        for (name, field) in mapping.columns.fields() {
            let Some(field) = field else { continue };
            let index = match field {
                Field::Value(_) => None,
                Field::Column { header, .. } => Some(find(header)?),
            };
            fields.push((name, field, index));
        }
        let mut properties = Vec::new();
        for (key, header) in &mapping.properties {
            properties.push((key.as_str(), find(header)?));
        }
        Ok(Plan {
            mapping,
            community,
            headers,
            fields,
            properties,
        })
    }

    /// The row's cells by header, personal columns left out, as JSON text.
    fn cells(&self, cells: &[Cell]) -> String {
        let format = &self.mapping.table.timestamp_format;
        let mut map = Map::new();
        for (i, c) in cells.iter().enumerate() {
            let header = self
                .headers
                .get(i)
                .filter(|h| !h.is_empty())
                .cloned()
                .unwrap_or_else(|| format!("column {}", i + 1));
            if is_personal_header(&header) || matches!(c, Cell::Empty) {
                continue;
            }
            map.insert(header, Value::String(c.text(format)));
        }
        Value::Object(map).to_string()
    }

    /// A stable id from all the row's cells (header and text, in column order).
    fn row_hash(&self, cells: &[Cell]) -> String {
        let format = &self.mapping.table.timestamp_format;
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        let last = cells
            .iter()
            .rposition(|c| !c.text(format).is_empty())
            .map_or(0, |i| i + 1);
        for (i, c) in cells[..last].iter().enumerate() {
            let header = self.headers.get(i).map_or("", String::as_str);
            for part in [header, &c.text(format)] {
                h.update(&(part.len() as u64).to_le_bytes());
                h.update(part.as_bytes());
            }
        }
        format!("row-{:032x}", h.digest128())
    }

    /// The canonical event of one row as a JSON object, or why not.
    fn event(&self, cells: &[Cell]) -> std::result::Result<Map<String, Value>, String> {
        let table = &self.mapping.table;
        let empty = Cell::Empty;
        let mut out = Map::new();
        if self.mapping.columns.community_id.is_none() {
            if let Some(c) = self.community {
                out.insert("community_id".into(), c.into());
            }
        }
        for &(name, field, index) in &self.fields {
            let (header, map, scale) = match field {
                Field::Value(v) => {
                    let value = match name {
                        "amount_minor" => Value::from(v.parse::<u64>().map_err(|e| e.to_string())?),
                        _ => Value::from(v.as_str()),
                    };
                    out.insert(name.into(), value);
                    continue;
                }
                Field::Column { header, map, scale } => (header, map, scale),
            };
            let cell = index.and_then(|i| cells.get(i)).unwrap_or(&empty);
            let text = cell.text(&table.timestamp_format);
            if text.is_empty() {
                if REQUIRED.contains(&name) || name == "community_id" {
                    return Err(format!("column `{header}` ({name}) is empty"));
                }
                continue;
            }
            let value = if TIMES.contains(&name) {
                let micros = parse_time(cell, table)
                    .map_err(|e| format!("column `{header}` ({name}): {e}"))?;
                Value::from(rfc3339(micros))
            } else if name == "amount_minor" {
                let scale = scale.unwrap_or(1);
                Value::from(
                    parse_amount(&text, scale)
                        .map_err(|e| format!("column `{header}` (amount_minor): {e}"))?,
                )
            } else if let Some(map) = map {
                match map.get(&text) {
                    Some(to) => Value::from(to.as_str()),
                    None => {
                        return Err(format!(
                            "`{text}` in column `{header}` is not in the mapping's map for {name} (known: {})",
                            map.keys().cloned().collect::<Vec<_>>().join(", ")
                        ))
                    }
                }
            } else {
                Value::from(text)
            };
            out.insert(name.into(), value);
        }
        if !out.contains_key("event_id") {
            out.insert("event_id".into(), self.row_hash(cells).into());
        }
        let mut properties = Map::new();
        for &(key, index) in &self.properties {
            let text = cells
                .get(index)
                .map(|c| c.text(&table.timestamp_format))
                .unwrap_or_default();
            if !text.is_empty() {
                properties.insert(key.into(), text.into());
            }
        }
        if !properties.is_empty() {
            out.insert("properties".into(), Value::Object(properties));
        }
        Ok(out)
    }
}

fn rfc3339(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        .unwrap_or_default()
}

/// A time cell to microseconds since the epoch: RFC 3339 with an offset, a workbook date (or
/// serial number), or text in `timestamp_format` taken in `timezone`.
pub fn parse_time(cell: &Cell, table: &TableOptions) -> std::result::Result<i64, String> {
    let local = match cell {
        Cell::Empty => return Err("empty".into()),
        Cell::Date(d) => *d,
        Cell::Number(v) => serial_date(*v)
            .ok_or_else(|| format!("{} is not an Excel date serial number", number_text(*v)))?,
        Cell::Text(s) => {
            let s = s.trim();
            if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
                return Ok(t.timestamp_micros());
            }
            let format = &table.timestamp_format;
            if let Ok(t) = chrono::DateTime::parse_from_str(s, format) {
                return Ok(t.timestamp_micros()); // the format has an offset (`%z`)
            }
            match NaiveDateTime::parse_from_str(s, format) {
                Ok(t) => t,
                Err(_) => match NaiveDate::parse_from_str(s, format) {
                    Ok(d) => d.and_time(chrono::NaiveTime::MIN),
                    Err(_) => {
                        return Err(format!(
                            "`{s}` does not match timestamp_format `{format}` (nor RFC 3339 with an offset)"
                        ))
                    }
                },
            }
        }
    };
    let tz = table.timezone.0;
    match tz.from_local_datetime(&local) {
        chrono::LocalResult::Single(t) => Ok(t.timestamp_micros()),
        chrono::LocalResult::None => Err(format!(
            "{local} does not exist in {tz} (skipped by a daylight-saving change); give it with an offset"
        )),
        chrono::LocalResult::Ambiguous(a, b) => Err(format!(
            "{local} happens twice in {tz} (at {} and at {}, a daylight-saving change); give it with an offset",
            a.format("%:z"),
            b.format("%:z")
        )),
    }
}

/// A decimal amount (`1,299.00`, `0.1`, `¥99`) times `scale` (10^d), exactly; more significant
/// decimals than `d` are refused (trailing zeros beyond them are fine).
pub fn parse_amount(text: &str, scale: u64) -> std::result::Result<i64, String> {
    let d = decimals(scale).ok_or_else(|| format!("scale {scale} is not a power of ten"))?;
    let s = text.trim();
    let s = ["¥", "￥", "$"]
        .iter()
        .find_map(|p| s.strip_prefix(p))
        .unwrap_or(s)
        .trim_start();
    if s.starts_with('-') {
        return Err(format!(
            "`{text}` is negative: a refund is its own event type (map its status to `refund`)"
        ));
    }
    let bad = || format!("`{text}` is not a decimal amount such as 1,299.00");
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if (int.is_empty() && frac.is_empty()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let groups: Vec<&str> = int.split(',').collect();
    let grouped_ok = groups.len() == 1
        || (!groups[0].is_empty()
            && groups[0].len() <= 3
            && groups[1..].iter().all(|g| g.len() == 3));
    if !grouped_ok || !groups.iter().all(|g| g.bytes().all(|b| b.is_ascii_digit())) {
        return Err(bad());
    }
    let significant = frac.trim_end_matches('0');
    if significant.len() > d as usize {
        return Err(format!(
            "`{text}` has more decimals than scale {scale} allows ({d})"
        ));
    }
    let too_large = || format!("`{text}` is too large");
    let mut value: i64 = 0;
    for b in groups.concat().bytes() {
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(i64::from(b - b'0')))
            .ok_or_else(too_large)?;
    }
    let mut minor = value.checked_mul(scale as i64).ok_or_else(too_large)?;
    let digits = format!("{significant:0<width$}", width = d as usize);
    if !digits.is_empty() {
        let f: i64 = digits.parse().map_err(|_| bad())?;
        minor = minor.checked_add(f).ok_or_else(too_large)?;
    }
    Ok(minor)
}

/// Read and map one table file: every data row below the header (wholly empty rows skipped).
/// `community` fills `community_id` when the mapping does not map it.
pub fn map_file(
    path: &Path,
    shown: &str,
    mapping: &Mapping,
    community: Option<&str>,
) -> Result<MappedFile> {
    mapping.community_ok(community)?;
    let table = read_table(path, &mapping.table)?;
    let label = match &table.sheet {
        Some(sheet) => format!("{shown} (sheet {sheet})"),
        None => shown.to_string(),
    };
    let header_row = u64::from(mapping.table.header_row);
    let header = table
        .rows
        .iter()
        .find(|(row, _)| *row == header_row)
        .ok_or_else(|| {
            input_error(
                path,
                format!(
                    "no header row {header_row} (the table has {} rows)",
                    table.rows.len()
                ),
            )
        })?;
    let plan = Plan::new(path, mapping, community, &header.1)?;
    let format = &mapping.table.timestamp_format;
    let rows = table
        .rows
        .iter()
        .filter(|(row, cells)| {
            *row > header_row && cells.iter().any(|c| !c.text(format).is_empty())
        })
        .map(|(row, cells)| MappedRow {
            row: *row,
            cells: plan.cells(cells),
            event: plan.event(cells).map(|e| Value::Object(e).to_string()),
        })
        .collect();
    Ok(MappedFile { label, rows })
}

/// Import table files (`(path, name)` pairs) through `mapping`: every file is read and mapped
/// before anything is written (a file that cannot be read imports nothing), then each row goes
/// through the importer as an NDJSON line would.
pub fn import(
    lake: &Lake,
    files: &[(PathBuf, String)],
    mapping: &Mapping,
    community: Option<&str>,
) -> Result<ImportStats> {
    let mapped = files
        .iter()
        .map(|(path, shown)| map_file(path, shown, mapping, community))
        .collect::<Result<Vec<_>>>()?;
    let mut writer = EventWriter::begin(lake, WriterOptions::default())?;
    for file in &mapped {
        let parsed: Vec<super::files::Parsed<'_>> = file
            .rows
            .iter()
            .map(|r| {
                let result = match &r.event {
                    Ok(line) => super::files::keyed(crate::event::parse_json_line(line)),
                    Err(reason) => Err(reason.clone()),
                };
                (r.row, r.cells.as_str(), result)
            })
            .collect();
        super::files::offer(&mut writer, &file.label, parsed)?;
        tracing::info!(file = %file.label, rows = file.rows.len(), "table read");
    }
    writer.commit()
}

/// What `--dry-run` shows: up to `limit` events as they would be imported (canonical JSON) and
/// up to `limit` rejected rows with their reasons, plus the counts.
#[derive(Debug, Default)]
pub struct DryRun {
    pub events: Vec<String>,
    pub rejected: Vec<String>,
    pub good: u64,
    pub bad: u64,
}

/// Map and validate `files` without writing anything.
pub fn dry_run(
    files: &[(PathBuf, String)],
    mapping: &Mapping,
    community: Option<&str>,
    limit: usize,
) -> Result<DryRun> {
    let mut out = DryRun::default();
    for (path, shown) in files {
        let file = map_file(path, shown, mapping, community)?;
        for r in &file.rows {
            let checked = match &r.event {
                Ok(line) => crate::event::parse_json_line(line).map(|_| line.clone()),
                Err(reason) => Err(reason.clone()),
            };
            match checked {
                Ok(line) => {
                    out.good += 1;
                    if out.events.len() < limit {
                        out.events.push(line);
                    }
                }
                Err(reason) => {
                    out.bad += 1;
                    if out.rejected.len() < limit {
                        out.rejected
                            .push(format!("{} row {}: {reason}", file.label, r.row));
                    }
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPPING: &str = r#"
[table]
header_row = 1
timezone = "Asia/Shanghai"

[columns]
community_id = { value = "python-camp" }
source = { value = "xiaoe" }
event_id = "订单号"
member_id = "用户ID"
occurred_at = "支付时间"
event_type = { column = "订单状态", map = { "已支付" = "purchase", "已退款" = "refund" } }
content_id = "商品ID"
amount_minor = { column = "实付金额", scale = 100 }
currency = { value = "CNY" }

[properties]
channel = "渠道"
"#;

    fn mapping(text: &str) -> Mapping {
        Mapping::from_toml(text, Path::new("m.toml")).unwrap()
    }

    fn mapping_error(text: &str) -> String {
        Mapping::from_toml(text, Path::new("m.toml"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn amounts_are_exact() {
        assert_eq!(parse_amount("99.00", 100), Ok(9900));
        assert_eq!(parse_amount("1,299.00", 100), Ok(129_900));
        assert_eq!(parse_amount("0.1", 100), Ok(10));
        assert_eq!(parse_amount("¥ 12", 100), Ok(1200));
        assert_eq!(parse_amount("1,234,567.5", 100), Ok(123_456_750));
        assert_eq!(parse_amount("99.000", 100), Ok(9900));
        assert_eq!(parse_amount(".5", 10), Ok(5));
        assert_eq!(parse_amount("7", 1), Ok(7));
        assert!(parse_amount("0.125", 100)
            .unwrap_err()
            .contains("more decimals"));
        assert!(parse_amount("1.5", 1)
            .unwrap_err()
            .contains("more decimals"));
        assert!(parse_amount("-3", 100).unwrap_err().contains("negative"));
        for bad in [
            "", ".", "1,29.00", "12,3456", ",123", "1.2.3", "abc", "1e5", "1 000",
        ] {
            assert!(parse_amount(bad, 100).is_err(), "{bad}");
        }
        assert!(parse_amount("99999999999999999999", 100)
            .unwrap_err()
            .contains("too large"));
    }

    #[test]
    fn local_times_in_the_mapping_timezone_refuse_dst_gaps_and_repeats() {
        let mut table = mapping(MAPPING).table;
        table.timezone = Timezone(chrono_tz::America::New_York);
        let t = |s: &str| parse_time(&Cell::Text(s.into()), &table);
        assert_eq!(
            rfc3339(t("2026-11-23 09:30:00").unwrap()),
            "2026-11-23T14:30:00Z"
        );
        assert!(t("2026-03-08 02:30:00")
            .unwrap_err()
            .contains("does not exist"));
        assert!(t("2026-11-01 01:30:00")
            .unwrap_err()
            .contains("happens twice"));
        // An offset settles it.
        assert_eq!(
            rfc3339(t("2026-11-01T01:30:00-05:00").unwrap()),
            "2026-11-01T06:30:00Z"
        );
        assert!(t("23/11/2026").unwrap_err().contains("timestamp_format"));
        // Excel dates, as a date cell or a bare serial number.
        let d = NaiveDate::from_ymd_opt(2026, 11, 23)
            .unwrap()
            .and_hms_opt(9, 30, 0)
            .unwrap();
        assert_eq!(parse_time(&Cell::Date(d), &table), t("2026-11-23 09:30:00"));
        assert_eq!(serial_date(46349.395833333336), Some(d));
        assert!(parse_time(&Cell::Number(-4.0), &table).is_err());
    }

    #[test]
    fn mappings_are_validated_at_load_naming_the_key() {
        let m = mapping(MAPPING);
        assert_eq!(m.table.timestamp_format, "%Y-%m-%d %H:%M:%S");
        assert_eq!(m.table.encoding, Encoding::Auto);
        let cases = [
            (
                MAPPING.replace("member_id = \"用户ID\"\n", ""),
                "columns.member_id",
                "required",
            ),
            (
                MAPPING.replace("\"refund\"", "\"refunded\""),
                "columns.event_type.map.已退款",
                "not an event type",
            ),
            (
                MAPPING.replace("scale = 100", "scale = 50"),
                "columns.amount_minor",
                "power of ten",
            ),
            (
                MAPPING.replace("channel = \"渠道\"", "phone = \"渠道\""),
                "properties.phone",
                "personal",
            ),
            (
                MAPPING.replace("channel = \"渠道\"", "channel = \"手机号\""),
                "properties.channel",
                "personal",
            ),
            (
                MAPPING.replace("content_id = \"商品ID\"", "title = \"昵称\""),
                "columns.title",
                "personal",
            ),
            (
                MAPPING.replace("content_id = \"商品ID\"", "body = \"Email\""),
                "columns.body",
                "personal",
            ),
            (
                MAPPING.replace("header_row = 1", "header_row = 0"),
                "table.header_row",
                "from 1",
            ),
            (
                MAPPING.replace("Asia/Shanghai", "Mars/Base"),
                "table.timezone",
                "IANA",
            ),
            (
                MAPPING.replace("header_row = 1", "colour = 1"),
                "table",
                "unknown field `colour`",
            ),
            (
                MAPPING.replace(
                    "content_id = \"商品ID\"",
                    "content_id = { column = \"a\", value = \"b\" }",
                ),
                "columns.content_id",
                "not both",
            ),
            (
                MAPPING.replace("content_id = \"商品ID\"", "content_id = 7"),
                "columns.content_id",
                "column header",
            ),
            (
                MAPPING.replace(
                    "content_id = \"商品ID\"",
                    "content_id = { column = \"a\", scale = 10 }",
                ),
                "columns.content_id",
                "amount_minor",
            ),
            (
                MAPPING.replace("header_row = 1", "timestamp_format = \"%Q\""),
                "table.timestamp_format",
                "chrono",
            ),
            (
                MAPPING.replace("header_row = 1", "encoding = \"latin1\""),
                "table.encoding",
                "unknown variant",
            ),
        ];
        for (text, key, message) in cases {
            let e = mapping_error(&text);
            assert!(e.contains("m.toml"), "{e}");
            assert!(e.contains(key), "{key}: {e}");
            assert!(e.contains(message), "{message}: {e}");
        }
    }

    #[test]
    fn csv_rows_keep_their_spreadsheet_numbers() {
        let text = "title line\n\n\"a\",b\n\"x\ny\",1\n\n2,3\n";
        let t = read_csv(Path::new("t.csv"), text.as_bytes(), Encoding::Auto).unwrap();
        let rows: Vec<u64> = t.rows.iter().map(|r| r.0).collect();
        assert_eq!(rows, [1, 3, 4, 6]);
        assert_eq!(t.rows[2].1[0], Cell::Text("x\ny".into()));
    }

    #[test]
    fn encodings_are_detected() {
        let p = Path::new("t.csv");
        let (gbk, _, _) = encoding_rs::GBK.encode("订单号,用户ID\n");
        assert_eq!(decode(p, &gbk, Encoding::Auto).unwrap(), "订单号,用户ID\n");
        assert_eq!(
            decode(p, "\u{feff}订单号".as_bytes(), Encoding::Auto).unwrap(),
            "订单号"
        );
        assert!(decode(p, &gbk, Encoding::Utf8)
            .unwrap_err()
            .to_string()
            .contains("gb18030"));
        assert!(decode(p, b"\x81\x20", Encoding::Gb18030).is_err());
        assert!(decode(p, b"\xff\xff", Encoding::Auto).is_err());
    }

    /// Property tests (proptest, bounded cases): random cells and damaged files are mapped or
    /// refused, never a panic.
    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn cell() -> impl Strategy<Value = String> {
            prop_oneof![
                prop::sample::select(vec![
                    "",
                    "已支付",
                    "已退款",
                    "待支付",
                    "2026-11-23 09:30:00",
                    "2026-03-08 02:30:00",
                    "2026-11-23T09:30:00+08:00",
                    "46349.5",
                    "1,299.00",
                    "0.1",
                    "0.125",
                    "-1",
                    "99999999999999999999999",
                    "\"",
                    "\n",
                    "é",
                    "u1",
                ])
                .prop_map(str::to_string),
                ".{0,8}",
            ]
        }

        fn csv_text(rows: &[Vec<String>]) -> String {
            let mut out = String::from("订单号,用户ID,支付时间,订单状态,商品ID,实付金额,渠道\n");
            for r in rows {
                let cells: Vec<String> = r
                    .iter()
                    .map(|c| format!("\"{}\"", c.replace('"', "\"\"")))
                    .collect();
                out.push_str(&cells.join(","));
                out.push('\n');
            }
            out
        }

        proptest! {
            #![proptest_config(ProptestConfig {
                cases: 64,
                failure_persistence: None,
                ..ProptestConfig::default()
            })]

            #[test]
            fn random_cells_are_mapped_or_refused(
                rows in prop::collection::vec(prop::collection::vec(cell(), 0..9), 0..6),
            ) {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("t.csv");
                std::fs::write(&path, csv_text(&rows)).unwrap();
                let m = mapping(MAPPING);
                if let Ok(file) = map_file(&path, "t.csv", &m, None) {
                    for r in file.rows {
                        if let Ok(line) = r.event {
                            let _ = crate::event::parse_json_line(&line);
                        }
                    }
                }
            }

            #[test]
            fn damaged_files_are_refused_without_a_panic(
                bytes in prop::collection::vec(any::<u8>(), 0..200),
                flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
                cut in any::<prop::sample::Index>(),
            ) {
                let dir = tempfile::tempdir().unwrap();
                let m = mapping(MAPPING);
                // Random bytes as a CSV (invalid GBK and UTF-8 among them).
                let csv = dir.path().join("t.csv");
                std::fs::write(&csv, &bytes).unwrap();
                let _ = map_file(&csv, "t.csv", &m, None);
                // A real workbook, damaged and truncated.
                let mut book = rust_xlsxwriter::Workbook::new();
                let sheet = book.add_worksheet();
                for (c, h) in ["订单号", "用户ID", "支付时间", "订单状态", "商品ID", "实付金额", "渠道"].iter().enumerate() {
                    sheet.write_string(0, c as u16, *h).unwrap();
                }
                sheet.write_string(1, 0, "o1").unwrap();
                sheet.write_number(1, 2, 46349.5).unwrap();
                let mut xlsx = book.save_to_buffer().unwrap();
                for (i, b) in flips {
                    let i = i.index(xlsx.len());
                    xlsx[i] = b;
                }
                xlsx.truncate(cut.index(xlsx.len() + 1));
                let path = dir.path().join("t.xlsx");
                std::fs::write(&path, &xlsx).unwrap();
                let _ = map_file(&path, "t.xlsx", &m, None);
            }
        }
    }
}
