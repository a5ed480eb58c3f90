//! Posts as rows of a file: the CSV whose header names the contract's fields (what
//! `ei-loader` reads and `ei-server export`/`import` write and read). One header
//! reader and one row reader, so the two tools accept the same files and say the
//! same thing about a bad header. Plain strings in and out: the callers own the CSV
//! parsing (and its dependency).

use crate::model::{Field, RawTransaction};

/// The column (and JSON key) that carries a transaction's deleteFlag.
pub const DELETE_FLAG: &str = "deleteFlag";

/// What a column of the header names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Column {
    Field(Field),
    DeleteFlag,
}

/// The columns a header names, in order. Every field of `mandatory` must be among
/// them (ei-loader's Update needs [`Field::UPDATE_KEY`]; an import of whole posts
/// needs [`Field::KEY`], owner included). Names are trimmed; an unknown one is an
/// error naming it.
pub fn header<'a>(
    names: impl IntoIterator<Item = &'a str>,
    mandatory: &[Field],
) -> Result<Vec<Column>, String> {
    let columns = names
        .into_iter()
        .map(|h| match (h.trim(), Field::from_name(h.trim())) {
            (DELETE_FLAG, _) => Ok(Column::DeleteFlag),
            (_, Some(f)) => Ok(Column::Field(f)),
            (other, None) => Err(format!(
                "unknown column {other:?} (columns are the contract's field names and deleteFlag)"
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(f) = mandatory
        .iter()
        .find(|f| !columns.contains(&Column::Field(**f)))
    {
        return Err(format!("the mandatory column {:?} is missing", f.name()));
    }
    Ok(columns)
}

/// One row as a raw transaction: the cells in column order, an empty cell an absent
/// field. The caller checks the cell count against the header first (and says where).
pub fn transaction<'a>(
    columns: &[Column],
    cells: impl IntoIterator<Item = &'a str>,
) -> RawTransaction {
    let mut tx = RawTransaction::default();
    for (c, v) in columns.iter().zip(cells).filter(|(_, v)| !v.is_empty()) {
        match c {
            Column::Field(f) => tx.engagement.set(*f, v),
            Column::DeleteFlag => tx.delete_flag = Some(v.to_owned()),
        }
    }
    tx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_maps_names_and_requires_the_mandatory_fields() {
        let names = [
            "registeredResidentIdentification",
            " deleteFlag ",
            "serviceDomain",
        ];
        assert_eq!(
            header(names, &[Field::RegisteredResidentIdentification]).unwrap(),
            [
                Column::Field(Field::RegisteredResidentIdentification),
                Column::DeleteFlag,
                Column::Field(Field::ServiceDomain)
            ]
        );
        assert_eq!(
            header(names, &Field::UPDATE_KEY).unwrap_err(),
            "the mandatory column \"categorization\" is missing"
        );
        assert!(header(["nope"], &[])
            .unwrap_err()
            .starts_with("unknown column \"nope\""));
    }

    #[test]
    fn an_empty_cell_is_an_absent_field() {
        let columns = [
            Column::Field(Field::SourceSystem),
            Column::Field(Field::Owner),
            Column::DeleteFlag,
        ];
        let tx = transaction(&columns, ["SS", "", "true"]);
        assert_eq!(tx.engagement.get(Field::SourceSystem), Some("SS"));
        assert_eq!(tx.engagement.get(Field::Owner), None);
        assert_eq!(tx.delete_flag.as_deref(), Some("true"));
    }
}
