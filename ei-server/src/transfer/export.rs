//! `ei-server export`: every post of a closed store, all twelve fields, as JSON lines
//! or CSV (the formats `ei-server import` and `ei-loader` read), streamed in key
//! order.

use super::Format;
use crate::model::{Field, PostRef};
use crate::store::export::{for_each_post, ExportError};
use std::io::Write;
use std::path::Path;

/// Writes every post of the store in `data_dir` to `out`; returns how many. A
/// closed pipe (`| head`) ends the export quietly.
pub fn export(data_dir: &Path, format: Format, out: impl Write) -> Result<u64, ExportError> {
    let mut out = std::io::BufWriter::with_capacity(1 << 20, out);
    let result = match format {
        Format::Csv => {
            let mut w = csv::Writer::from_writer(&mut out);
            w.write_record(Field::ALL.map(Field::name))
                .map_err(csv_io)?;
            let n = for_each_post(data_dir, |p| w.write_record(values(p)).map_err(csv_io))?;
            w.flush()?;
            Ok(n)
        }
        _ => {
            let mut line = String::with_capacity(1024);
            for_each_post(data_dir, |p| {
                line.clear();
                json_line(&mut line, p);
                out.write_all(line.as_bytes())
            })
        }
    };
    let result = result.and_then(|n| out.flush().map(|()| n).map_err(ExportError::from));
    match result {
        Err(ExportError::Write(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(0),
        other => other,
    }
}

fn csv_io(e: csv::Error) -> std::io::Error {
    match e.into_kind() {
        csv::ErrorKind::Io(e) => e,
        other => std::io::Error::other(format!("{other:?}")),
    }
}

/// The twelve values in [`Field::ALL`] order (an absent timestamp is empty).
fn values(p: &PostRef<'_>) -> [String; 12] {
    let t = |t: Option<crate::model::Timestamp>| t.map(|t| t.to_string()).unwrap_or_default();
    let mut out: [String; 12] = Default::default();
    for (i, part) in p.parts.iter().enumerate() {
        out[i] = part.to_string();
    }
    out[9] = t(p.most_recent_content);
    out[10] = t(p.creation_time);
    out[11] = t(p.update_time);
    out
}

/// One post as a JSON object on one line, fields in table order; an absent
/// timestamp is left out.
pub fn json_line(out: &mut String, p: &PostRef<'_>) {
    out.push('{');
    for (i, (f, v)) in Field::KEY.iter().zip(&p.parts).enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_pair(out, f.name(), v);
    }
    for (f, t) in
        Field::TIMESTAMPS
            .iter()
            .zip([p.most_recent_content, p.creation_time, p.update_time])
    {
        if let Some(t) = t {
            out.push(',');
            push_pair(out, f.name(), &t.to_string());
        }
    }
    out.push_str("}\n");
}

fn push_pair(out: &mut String, name: &str, value: &str) {
    out.push('"');
    out.push_str(name);
    out.push_str("\":");
    push_json_string(out, value);
}

fn push_json_string(out: &mut String, s: &str) {
    use std::fmt::Write as _;
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    #[test]
    fn json_lines_read_back() {
        let post = PostRef {
            parts: std::array::from_fn(|i| Cow::Owned(format!("v{i}\"\\\n\u{1}å"))),
            most_recent_content: None,
            creation_time: Some(crate::model::Timestamp::try_from("20240101120000").unwrap()),
            update_time: None,
        };
        let mut line = String::new();
        json_line(&mut line, &post);
        let tx = super::super::json_record(line.trim_end()).unwrap();
        assert_eq!(tx.engagement.get(Field::Owner), Some("v8\"\\\n\u{1}å"));
        assert_eq!(
            tx.engagement.get(Field::CreationTime),
            Some("20240101120000")
        );
        assert_eq!(tx.engagement.get(Field::UpdateTime), None);
    }
}
