//! Event formats, as the running kernel describes them in `events/<system>/<name>/format`
//! and `events/header_page`.
//!
//! Field offsets differ between kernels and configurations, so isol never hard-codes them:
//! every decoder binds to the offsets read here.

use std::fmt;

/// One field of an event record, or of the ring-buffer page header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// C type as the kernel prints it (`unsigned int`, `void *`, `__data_loc char[]`).
    pub ctype: String,
    /// Field name without any array suffix.
    pub name: String,
    /// Byte offset from the start of the record.
    pub offset: usize,
    /// Size in bytes (of the whole array for fixed arrays; 4 for `__data_loc`).
    pub size: usize,
    /// Whether the field is signed.
    pub signed: bool,
    /// `__data_loc`: the field holds `offset | length << 16` of data stored later in the
    /// record; `__rel_loc` is the same with the offset relative to the end of the field.
    pub dynamic: Option<DynamicKind>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
/// How a dynamic field points to its data.
pub enum DynamicKind {
    /// `__data_loc`: offset from the record start.
    DataLoc,
    /// `__rel_loc`: offset from the field end.
    RelLoc,
}

/// A parsed `format` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFormat {
    /// Event system (`irq`).
    pub system: String,
    /// Event name (`irq_handler_entry`).
    pub name: String,
    /// Event id.
    pub id: u16,
    /// Common fields first (`common_type`, `common_pid`, ...), then the event's own.
    pub fields: Vec<Field>,
}

/// Why a format file could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event format {what}: {reason}")]
pub struct FormatError {
    /// What did not parse.
    pub what: String,
    /// Why.
    pub reason: String,
}

fn err(what: &str, reason: impl Into<String>) -> FormatError {
    FormatError {
        what: what.to_string(),
        reason: reason.into(),
    }
}

impl EventFormat {
    /// Parse the text of `events/<system>/<name>/format`.
    pub fn parse(system: &str, text: &str) -> Result<EventFormat, FormatError> {
        let what = format!("{system}/?");
        let mut name = None;
        let mut id = None;
        for line in text.lines() {
            if let Some(v) = line.strip_prefix("name:") {
                name = Some(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("ID:") {
                let v = v.trim();
                id = Some(
                    v.parse::<u16>()
                        .map_err(|_| err(&what, format!("ID {v:?} is not a 16-bit number")))?,
                );
            }
        }
        let name = name.ok_or_else(|| err(&what, "no `name:` line"))?;
        let what = format!("{system}/{name}");
        let id = id.ok_or_else(|| err(&what, "no `ID:` line"))?;
        let fields = parse_fields(&what, text)?;
        if fields.is_empty() {
            return Err(err(&what, "no fields"));
        }
        Ok(EventFormat {
            system: system.to_string(),
            name,
            id,
            fields,
        })
    }

    /// The field called `name`, if the event has it.
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// `system:name`, as `set_event` and the documentation write it.
    pub fn full_name(&self) -> String {
        format!("{}:{}", self.system, self.name)
    }
}

/// Parse every `field:` line of a format file (also used for `header_page`).
pub fn parse_fields(what: &str, text: &str) -> Result<Vec<Field>, FormatError> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        let Some(rest) = line.strip_prefix("field:") else {
            continue;
        };
        let mut decl = None;
        let (mut offset, mut size, mut signed) = (None, None, None);
        for part in rest.split(';') {
            let part = part.trim();
            if let Some(v) = part.strip_prefix("offset:") {
                offset = v.trim().parse::<usize>().ok();
            } else if let Some(v) = part.strip_prefix("size:") {
                size = v.trim().parse::<usize>().ok();
            } else if let Some(v) = part.strip_prefix("signed:") {
                signed = Some(v.trim() == "1");
            } else if decl.is_none() && !part.is_empty() {
                decl = Some(part.to_string());
            }
        }
        let bad = |r: &str| err(what, format!("line {line:?}: {r}"));
        let decl = decl.ok_or_else(|| bad("no declaration"))?;
        let offset = offset.ok_or_else(|| bad("no offset"))?;
        let size = size.ok_or_else(|| bad("no size"))?;
        let (ctype, name) = split_decl(&decl).ok_or_else(|| bad("cannot split type and name"))?;
        let dynamic = if ctype.starts_with("__data_loc") {
            Some(DynamicKind::DataLoc)
        } else if ctype.starts_with("__rel_loc") {
            Some(DynamicKind::RelLoc)
        } else {
            None
        };
        out.push(Field {
            ctype,
            name,
            offset,
            size,
            signed: signed.unwrap_or(false),
            dynamic,
        });
    }
    Ok(out)
}

/// `unsigned long caller[8]` -> (`unsigned long`, `caller`).
fn split_decl(decl: &str) -> Option<(String, String)> {
    let decl = decl.trim();
    let cut = decl.rfind(|c: char| c.is_whitespace() || c == '*')?;
    let (ty, name) = decl.split_at(cut + 1);
    let name = name.split('[').next()?.trim();
    if name.is_empty() {
        return None;
    }
    Some((ty.trim().to_string(), name.to_string()))
}

/// The largest ring-buffer page isol accepts (kernels use 4 KiB; sub-buffers may reach a
/// few hundred KiB with `buffer_subbuf_size_kb`).
pub const MAX_PAGE: usize = 1 << 20;

/// The layout of one ring-buffer page, from `events/header_page`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLayout {
    /// Bytes per page as `trace_pipe_raw` returns them.
    pub page_size: usize,
    /// Offset and size of the `commit` word (bytes of event data, plus flag bits).
    pub commit_offset: usize,
    /// Bytes of the `commit` field.
    pub commit_size: usize,
    /// Where event data starts.
    pub data_offset: usize,
}

impl PageLayout {
    /// Parse `events/header_page`.
    pub fn parse(text: &str) -> Result<PageLayout, FormatError> {
        let fields = parse_fields("header_page", text)?;
        let get = |n: &str| {
            fields
                .iter()
                .find(|f| f.name == n)
                .ok_or_else(|| err("header_page", format!("no `{n}` field")))
        };
        let ts = get("timestamp")?;
        let commit = get("commit")?;
        let data = get("data")?;
        if ts.offset != 0 || ts.size != 8 {
            return Err(err("header_page", "timestamp is not a u64 at offset 0"));
        }
        if commit.size != 4 && commit.size != 8 {
            return Err(err(
                "header_page",
                format!("commit has size {}", commit.size),
            ));
        }
        let page_size = data.offset + data.size;
        if !(64..=MAX_PAGE).contains(&page_size)
            || data.offset < 16
            || commit.offset < 8
            || commit.offset + commit.size > data.offset
        {
            return Err(err(
                "header_page",
                format!(
                    "a {page_size}-byte page with data at {} and commit at {}: not a ring-buffer page",
                    data.offset, commit.offset
                ),
            ));
        }
        Ok(PageLayout {
            page_size,
            commit_offset: commit.offset,
            commit_size: commit.size,
            data_offset: data.offset,
        })
    }
}

impl fmt::Display for PageLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}-byte pages, {}-byte commit at {}, data at {}",
            self.page_size, self.commit_size, self.commit_offset, self.data_offset
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "\tfield: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;
\tfield: local_t commit;\toffset:8;\tsize:8;\tsigned:1;
\tfield: int overwrite;\toffset:8;\tsize:1;\tsigned:1;
\tfield: char data;\toffset:16;\tsize:4080;\tsigned:0;
";

    const QUEUE: &str = "name: workqueue_queue_work
ID: 337
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:void * work;\toffset:8;\tsize:8;\tsigned:0;
\tfield:void * function;\toffset:16;\tsize:8;\tsigned:0;
\tfield:__data_loc char[] workqueue;\toffset:24;\tsize:4;\tsigned:0;
\tfield:int req_cpu;\toffset:28;\tsize:4;\tsigned:1;
\tfield:int cpu;\toffset:32;\tsize:4;\tsigned:1;

print fmt: \"work struct=%p\", REC->work
";

    #[test]
    fn header_page_gives_the_page_layout() {
        let l = PageLayout::parse(HEADER).unwrap();
        assert_eq!(l.page_size, 4096);
        assert_eq!((l.commit_offset, l.commit_size, l.data_offset), (8, 8, 16));
    }

    #[test]
    fn event_format_fields_types_and_dynamic_strings() {
        let f = EventFormat::parse("workqueue", QUEUE).unwrap();
        assert_eq!((f.name.as_str(), f.id), ("workqueue_queue_work", 337));
        assert_eq!(f.full_name(), "workqueue:workqueue_queue_work");
        let w = f.field("function").unwrap();
        assert_eq!((w.ctype.as_str(), w.offset, w.size), ("void *", 16, 8));
        let q = f.field("workqueue").unwrap();
        assert_eq!(q.dynamic, Some(DynamicKind::DataLoc));
        assert_eq!(q.ctype, "__data_loc char[]");
        assert!(f.field("cpu").unwrap().signed);
        assert_eq!(f.field("common_pid").unwrap().offset, 4);
    }

    #[test]
    fn arrays_keep_their_name_without_the_suffix() {
        assert_eq!(
            split_decl("unsigned long caller[8]"),
            Some(("unsigned long".into(), "caller".into()))
        );
        assert_eq!(split_decl("char prev_comm[16]").unwrap().1, "prev_comm");
        assert_eq!(
            split_decl("void *hrtimer").unwrap(),
            ("void *".into(), "hrtimer".into())
        );
    }

    #[test]
    fn broken_formats_are_errors() {
        assert!(EventFormat::parse("x", "ID: 3\nformat:\n").is_err());
        assert!(EventFormat::parse("x", "name: a\nID: 99999\n").is_err());
        assert!(EventFormat::parse("x", "name: a\nID: 9\n").is_err());
        let e = EventFormat::parse("x", "name: a\nID: 9\n\tfield:int a;\tsize:4;\n").unwrap_err();
        assert!(e.to_string().contains("no offset"), "{e}");
        assert!(PageLayout::parse("\tfield: u64 timestamp;\toffset:0;\tsize:8;\n").is_err());
    }
}
