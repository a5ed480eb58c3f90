//! Who is calling and what they may do: the `[access]` table, as plain functions.
//!
//! [`identify`] turns what a request carries (the client certificate's HSA-id, the
//! platform headers) into an [`Identity`]; [`AccessConfig::check_service`] and
//! [`AccessConfig::check_sources`] judge it. Only a *verified* identity (a client
//! certificate the listener checked against `tls_client_ca`, or the original consumer
//! named by a caller on the `platform` list) passes an allow list; a name taken from
//! headers alone only goes into the logs and the access log.
//!
//! A missing list means anyone who passed TLS; an empty list means nobody; no table
//! means no checks. [`AccessConfig::check`] refuses a table that restricts anything
//! while client certificates are off: then nobody would be verified.

use crate::operation::{Operation, WriteOperation};
use crate::rules::EiError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// In `update_sources`: every sourceSystem (for a peer index or the platform, whose
/// calls carry many producers' posts).
pub const ANY_SOURCE: &str = "*";

/// The `[access]` table.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccessConfig {
    /// HSA-ids of the platform (its function certificates): their calls may name the
    /// original consumer in `x-rivta-original-serviceconsumer-hsaid`, which is then the
    /// caller. From anyone else the header is ignored.
    pub platform: Vec<String>,
    /// Callers allowed to call Update; `None`: anyone who passed TLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update: Option<Vec<String>>,
    /// Callers allowed to call ProcessNotification.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process_notification: Option<Vec<String>>,
    /// Callers allowed to call FindContent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub find_content: Option<Vec<String>>,
    /// Caller → the sourceSystem values whose posts it may write or delete, through
    /// Update and ProcessNotification ([`ANY_SOURCE`]: all). When the table is set, a
    /// caller it does not name may write none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update_sources: Option<BTreeMap<String, Vec<String>>>,
}

/// Who is calling, as far as the index can tell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    /// Named by a client certificate the listener verified, or the original consumer
    /// a verified platform certificate names (`via` the platform's HSA-id).
    Verified { hsa_id: String, via: Option<String> },
    /// Named by request headers only (no client certificates): logged, never trusted.
    Claimed(String),
    /// Nobody named (or a verified certificate with neither serialNumber nor CN).
    Anonymous,
}

impl Identity {
    /// The name logs and the access log give the caller.
    pub fn name(&self) -> &str {
        match self {
            Identity::Verified { hsa_id, .. } => hsa_id,
            Identity::Claimed(name) => name,
            Identity::Anonymous => "anonymous",
        }
    }

    /// The HSA-id an allow list may match: only a verified one.
    pub fn verified(&self) -> Option<&str> {
        match self {
            Identity::Verified { hsa_id, .. } => Some(hsa_id),
            _ => None,
        }
    }
}

/// A header's value, trimmed; `None` when blank.
fn present(h: Option<&str>) -> Option<&str> {
    h.map(str::trim).filter(|s| !s.is_empty())
}

/// A name taken from a header as the logs and the access log keep it: capped and
/// escaped like all echoed input ([`crate::rules::echo`]), so a header can neither
/// forge a log line nor make every access record it writes large.
fn from_header(h: &str) -> String {
    crate::rules::echo(h).into_owned()
}

/// What a request tells about its caller.
#[derive(Clone, Copy, Debug, Default)]
pub struct Presented<'a> {
    /// Whether the listener verifies client certificates (`tls_client_ca`).
    pub client_certificates: bool,
    /// The HSA-id of the verified client certificate (serialNumber, else CN).
    pub certificate: Option<&'a str>,
    /// `x-rivta-original-serviceconsumer-hsaid`.
    pub original_consumer: Option<&'a str>,
    /// `x-vp-sender-id`.
    pub sender: Option<&'a str>,
}

/// The caller of a request. With client certificates: the certificate's HSA-id, or,
/// when that is on `platform`, the original consumer it names (if any). Without them:
/// what the headers claim (the original consumer, else the sender), for the logs.
pub fn identify(platform: &[String], p: Presented<'_>) -> Identity {
    if !p.client_certificates {
        return match present(p.original_consumer).or(present(p.sender)) {
            Some(name) => Identity::Claimed(from_header(name)),
            None => Identity::Anonymous,
        };
    }
    let Some(cert) = present(p.certificate) else {
        return Identity::Anonymous;
    };
    match present(p.original_consumer) {
        Some(consumer) if platform.iter().any(|id| id == cert) => Identity::Verified {
            hsa_id: from_header(consumer),
            via: Some(cert.to_owned()),
        },
        _ => Identity::Verified {
            hsa_id: cert.to_owned(),
            via: None,
        },
    }
}

impl AccessConfig {
    /// Whether the table asks for anything (then client certificates are needed).
    pub fn is_set(&self) -> bool {
        !self.platform.is_empty()
            || self.update.is_some()
            || self.process_notification.is_some()
            || self.find_content.is_some()
            || self.update_sources.is_some()
    }

    /// Whether the table is absent or empty (no checks at all).
    pub fn is_unset(&self) -> bool {
        !self.is_set()
    }

    /// The allow list of `op`, with its key.
    pub fn list(&self, op: Operation) -> (&'static str, Option<&Vec<String>>) {
        match op {
            Operation::Update => ("update", self.update.as_ref()),
            Operation::ProcessNotification => {
                ("process_notification", self.process_notification.as_ref())
            }
            Operation::FindContent => ("find_content", self.find_content.as_ref()),
        }
    }

    /// Checks the table: no blank or padded HSA-id, no `*` outside `update_sources`,
    /// and client certificates on when it asks for anything (`client_certificates`).
    /// The error names the key.
    pub fn check(&self, client_certificates: bool) -> Result<(), String> {
        let lists = Operation::ALL.iter().filter_map(|op| {
            let (key, list) = self.list(*op);
            list.map(|l| (key.to_owned(), l))
        });
        let named = std::iter::once(("platform".to_owned(), &self.platform)).chain(lists);
        for (key, list) in named {
            if let Some(bad) = list.iter().find(|id| !well_formed(id) || *id == ANY_SOURCE) {
                return Err(format!("access.{key}: {bad:?} is not an HSA-id"));
            }
        }
        for (caller, sources) in self.update_sources.iter().flatten() {
            if !well_formed(caller) {
                return Err(format!(
                    "access.update_sources: {caller:?} is not an HSA-id"
                ));
            }
            if let Some(bad) = sources.iter().find(|s| !well_formed(s)) {
                return Err(format!(
                    "access.update_sources.{caller}: {bad:?} is not a sourceSystem"
                ));
            }
        }
        if self.is_set() && !client_certificates {
            return Err(
                "access: the [access] table needs client certificates to know who is \
                 calling; set tls_cert, tls_key and tls_client_ca, or remove [access]"
                    .to_owned(),
            );
        }
        Ok(())
    }

    /// Whether `who` may call `op`.
    pub fn check_service(&self, who: &Identity, op: Operation) -> Result<(), EiError> {
        let (_, Some(list)) = self.list(op) else {
            return Ok(());
        };
        match who.verified() {
            Some(id) if list.iter().any(|a| a == id) => Ok(()),
            _ => Err(EiError::Forbidden {
                caller: who.name().to_owned(),
                service: op.name(),
                source_system: None,
            }),
        }
    }

    /// Whether `who` may write (or delete) a post of each sourceSystem in `sources`
    /// through `op`; the first one it may not is the error.
    pub fn check_sources<'a>(
        &self,
        who: &Identity,
        op: WriteOperation,
        mut sources: impl Iterator<Item = &'a str>,
    ) -> Result<(), EiError> {
        let Some(table) = &self.update_sources else {
            return Ok(());
        };
        let allowed = who.verified().and_then(|id| table.get(id));
        let may = |source: &str| {
            allowed.is_some_and(|a| a.iter().any(|s| s == source || s == ANY_SOURCE))
        };
        match sources.find(|s| !may(s)) {
            None => Ok(()),
            Some(source) => Err(EiError::Forbidden {
                caller: who.name().to_owned(),
                service: Operation::from(op).name(),
                source_system: Some(source.to_owned()),
            }),
        }
    }

    /// One line per service for the start-up log: who may call it.
    pub fn describe(&self) -> Vec<String> {
        let mut lines: Vec<String> = Operation::ALL
            .iter()
            .map(|op| match self.list(*op) {
                (_, None) => format!("{}: any caller with a client certificate", op.name()),
                (key, Some(l)) if l.is_empty() => {
                    format!("{}: closed (access.{key} is empty)", op.name())
                }
                (_, Some(l)) => format!("{}: {}", op.name(), l.join(", ")),
            })
            .collect();
        if let Some(t) = &self.update_sources {
            lines.push(format!(
                "source systems limited for {} caller(s); others may write none",
                t.len()
            ));
        }
        lines
    }
}

/// An HSA-id or sourceSystem as a list may hold it: not blank, no padding, no
/// control characters.
fn well_formed(id: &str) -> bool {
    !id.is_empty() && id.trim() == id && !id.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> AccessConfig {
        AccessConfig {
            platform: vec!["VP".into()],
            update: Some(vec!["A".into(), "B".into()]),
            process_notification: None,
            find_content: Some(vec!["C".into()]),
            update_sources: Some(BTreeMap::from([
                ("A".into(), vec!["SRC-A".into()]),
                ("PEER".into(), vec![ANY_SOURCE.into()]),
            ])),
        }
    }

    fn mtls<'a>(cert: Option<&'a str>, consumer: Option<&'a str>) -> Presented<'a> {
        Presented {
            client_certificates: true,
            certificate: cert,
            original_consumer: consumer,
            sender: Some("SENDER"),
        }
    }

    fn verified(id: &str) -> Identity {
        Identity::Verified {
            hsa_id: id.into(),
            via: None,
        }
    }

    #[test]
    fn only_the_platform_may_name_the_original_consumer() {
        let p = cfg().platform;
        assert_eq!(
            identify(&p, mtls(Some("VP"), Some("C"))),
            Identity::Verified {
                hsa_id: "C".into(),
                via: Some("VP".into())
            }
        );
        assert_eq!(identify(&p, mtls(Some("VP"), Some(" "))), verified("VP"));
        assert_eq!(identify(&p, mtls(Some("A"), Some("C"))), verified("A"));
        assert_eq!(identify(&p, mtls(None, Some("C"))), Identity::Anonymous);
    }

    #[test]
    fn without_client_certificates_the_headers_are_only_claims() {
        let plain = |consumer, sender| Presented {
            client_certificates: false,
            certificate: None,
            original_consumer: consumer,
            sender,
        };
        let id = identify(&[], plain(Some("SE1"), Some("SE2")));
        assert_eq!(id, Identity::Claimed("SE1".into()));
        assert_eq!(id.verified(), None);
        assert_eq!(
            identify(&[], plain(None, Some("SE2"))),
            Identity::Claimed("SE2".into())
        );
        assert_eq!(identify(&[], plain(None, None)).name(), "anonymous");
        // Capped and escaped: a header can neither forge a log line nor bloat a record.
        let long = "x".repeat(5000);
        let id = identify(&[], plain(Some(&long), None));
        assert_eq!(id.name().chars().count(), crate::rules::MAX_ECHO + 1);
        let id = identify(&[], plain(Some("SE1\nforged"), None));
        assert_eq!(id.name(), "SE1\\u{a}forged");
        // A claim never passes an allow list, even one naming it.
        assert!(cfg()
            .check_service(&Identity::Claimed("A".into()), Operation::Update)
            .is_err());
    }

    #[test]
    fn lists_per_service() {
        let c = cfg();
        assert!(c.check_service(&verified("A"), Operation::Update).is_ok());
        assert!(c.check_service(&verified("C"), Operation::Update).is_err());
        assert!(c
            .check_service(&verified("anyone"), Operation::ProcessNotification)
            .is_ok());
        let e = c
            .check_service(&Identity::Anonymous, Operation::FindContent)
            .unwrap_err();
        assert_eq!(
            e.wire().text,
            "EI000: A technical error has occurred, error message: Caller anonymous is not authorized to call FindContent"
        );
        let closed = AccessConfig {
            find_content: Some(vec![]),
            ..AccessConfig::default()
        };
        assert!(closed
            .check_service(&verified("C"), Operation::FindContent)
            .is_err());
    }

    #[test]
    fn source_systems_per_caller() {
        let c = cfg();
        let up = WriteOperation::Update;
        assert!(c
            .check_sources(&verified("A"), up, ["SRC-A", "SRC-A"].into_iter())
            .is_ok());
        let e = c
            .check_sources(&verified("A"), up, ["SRC-A", "SRC-B"].into_iter())
            .unwrap_err();
        assert_eq!(
            e.wire().text,
            "EI000: A technical error has occurred, error message: Caller A is not authorized to write posts of sourceSystem SRC-B through Update"
        );
        // Not in the table: nothing; `*`: everything.
        assert!(c
            .check_sources(&verified("B"), up, ["SRC-B"].into_iter())
            .is_err());
        assert!(c
            .check_sources(
                &verified("PEER"),
                WriteOperation::ProcessNotification,
                ["X", "Y"].into_iter()
            )
            .is_ok());
        assert!(AccessConfig::default()
            .check_sources(&Identity::Anonymous, up, ["X"].into_iter())
            .is_ok());
    }

    #[test]
    fn the_check_refuses_blank_ids_and_a_table_without_client_certificates() {
        assert!(cfg().check(true).is_ok());
        assert!(AccessConfig::default().check(false).is_ok());
        let err = cfg().check(false).unwrap_err();
        assert!(err.contains("tls_client_ca"), "{err}");
        let padded = AccessConfig {
            update: Some(vec![" A".into()]),
            ..AccessConfig::default()
        };
        assert!(padded.check(true).unwrap_err().contains("access.update"));
        let star = AccessConfig {
            find_content: Some(vec!["*".into()]),
            ..AccessConfig::default()
        };
        assert!(star
            .check(true)
            .unwrap_err()
            .contains("access.find_content"));
        let blank_source = AccessConfig {
            update_sources: Some(BTreeMap::from([("A".into(), vec!["".into()])])),
            ..AccessConfig::default()
        };
        let err = blank_source.check(true).unwrap_err();
        assert!(err.contains("access.update_sources.A"), "{err}");
    }
}
