//! The service description served at `<endpoint>?wsdl`: the contract's WSDL files with
//! their address set to the server's URL and their schema imports pointing at
//! `/skltp-ei/schemas/…`, where the XSDs are served unchanged (their own relative
//! imports resolve against that URL), so SOAP tools import a service from its URL.

use crate::operation::Operation;

/// Where the schemas are served; the path below it mirrors the contract's folders.
pub const SCHEMA_ROOT: &str = "/skltp-ei/schemas/";

macro_rules! schema_files {
    ($($path:literal),* $(,)?) => {
        /// Every served schema file: (path below [`SCHEMA_ROOT`], contents).
        pub const SCHEMAS: &[(&str, &str)] = &[
            $(($path, include_str!(concat!("../schemas/TD_ENGAGEMENTINDEX_1_0_R/", $path)))),*
        ];
    };
}

schema_files!(
    "core_components/itintegration_engagementindex_1.0.xsd",
    "core_components/itintegration_registry_1.0.xsd",
    "interactions/UpdateInteraction/UpdateResponder_1.0.xsd",
    "interactions/UpdateInteraction/UpdateInteraction_1.0_RIVTABP21.wsdl",
    "interactions/ProcessNotificationInteraction/ProcessNotificationResponder_1.0.xsd",
    "interactions/ProcessNotificationInteraction/ProcessNotificationInteraction_1.0_RIVTABP21.wsdl",
    "interactions/FindContentInteraction/FindContentResponder_1.0.xsd",
    "interactions/FindContentInteraction/FindContentInteraction_1.0_RIVTABP21.wsdl",
);

/// The HTTP path of an operation's endpoint.
pub const fn endpoint_path(op: Operation) -> &'static str {
    match op {
        Operation::Update => "/skltp-ei/update-service/v1",
        Operation::ProcessNotification => "/skltp-ei/notification-service/v1",
        Operation::FindContent => "/skltp-ei/find-content-service/v1",
    }
}

/// The folder of an operation's interaction below [`SCHEMA_ROOT`].
const fn interaction_dir(op: Operation) -> &'static str {
    match op {
        Operation::Update => "interactions/UpdateInteraction",
        Operation::ProcessNotification => "interactions/ProcessNotificationInteraction",
        Operation::FindContent => "interactions/FindContentInteraction",
    }
}

/// A served schema file by its path below [`SCHEMA_ROOT`].
pub fn schema(path: &str) -> Option<&'static str> {
    SCHEMAS.iter().find(|(p, _)| *p == path).map(|(_, s)| *s)
}

/// The WSDL of `op` for a server reached at `base_url` (e.g. `http://host:8080`).
pub fn wsdl(op: Operation, base_url: &str) -> String {
    let dir = interaction_dir(op);
    let file = format!("{dir}/{}Interaction_1.0_RIVTABP21.wsdl", op.name());
    let text = schema(&file).expect("every operation's WSDL is embedded");
    let base = attribute_escape(base_url.trim_end_matches('/'));
    let base = base.as_str();
    let mut out = String::with_capacity(text.len() + 256);
    let mut rest = text;
    while let Some(i) = rest.find("schemaLocation='") {
        let start = i + "schemaLocation='".len();
        let end = start + rest[start..].find('\'').expect("quoted attribute");
        out.push_str(&rest[..start]);
        out.push_str(base);
        out.push_str(SCHEMA_ROOT);
        out.push_str(&join(dir, &rest[start..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out.replace(
        "location='http://tempuri.org'",
        &format!("location='{base}{}'", endpoint_path(op)),
    )
}

/// `s` safe inside a quoted XML attribute value (the WSDL quotes with `'`).
fn attribute_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// Resolves a relative path against a folder (handles `..`).
fn join(dir: &str, relative: &str) -> String {
    let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
    for p in relative.split('/') {
        match p {
            ".." => {
                parts.pop();
            }
            "." | "" => {}
            p => parts.push(p),
        }
    }
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wsdl_points_at_the_server_and_served_schemas() {
        let w = wsdl(Operation::Update, "http://127.0.0.1:9000/");
        assert!(w.contains("location='http://127.0.0.1:9000/skltp-ei/update-service/v1'"));
        assert!(w.contains("schemaLocation='http://127.0.0.1:9000/skltp-ei/schemas/interactions/UpdateInteraction/UpdateResponder_1.0.xsd'"));
        assert!(w.contains("schemaLocation='http://127.0.0.1:9000/skltp-ei/schemas/core_components/itintegration_registry_1.0.xsd'"));
        assert!(!w.contains("tempuri"));
    }

    #[test]
    fn every_import_of_every_wsdl_is_served() {
        for op in Operation::ALL {
            let w = wsdl(op, "http://h");
            for chunk in w
                .split("schemaLocation='http://h/skltp-ei/schemas/")
                .skip(1)
            {
                let path = &chunk[..chunk.find('\'').unwrap()];
                let xsd = schema(path).unwrap_or_else(|| panic!("{path} not served"));
                // The XSD's own relative imports resolve to served files too.
                for inner in xsd.split("schemaLocation='").skip(1) {
                    let rel = &inner[..inner.find('\'').unwrap()];
                    let dir = &path[..path.rfind('/').unwrap()];
                    assert!(schema(&join(dir, rel)).is_some(), "{rel} from {path}");
                }
            }
        }
    }

    #[test]
    fn the_address_is_escaped() {
        let w = wsdl(Operation::Update, "http://h'/><x a='&");
        assert!(w.contains(
            "location='http://h&apos;/&gt;&lt;x a=&apos;&amp;/skltp-ei/update-service/v1'"
        ));
    }

    #[test]
    fn join_handles_parent_dirs() {
        assert_eq!(join("interactions/X", "../../core/a.xsd"), "core/a.xsd");
        assert_eq!(join("interactions/X", "a.xsd"), "interactions/X/a.xsd");
    }
}
