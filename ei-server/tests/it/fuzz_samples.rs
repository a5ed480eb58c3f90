//! The fuzz targets' invariants on stable, for every CI run (the cargo-fuzz targets in
//! `fuzz/` go deeper but need libFuzzer): the platform's samples, mutated (byte flips,
//! truncations, inserted control characters, character and entity references, markup
//! (anywhere, and inside the text of a field, where it most often still parses),
//! duplicated lines and elements), sent through [`Service::call`] on a real store. No
//! call panics, every reply is well-formed XML that reads back as what its status
//! says, and what an accepted Update stored is served back by FindContent as
//! well-formed XML.

use crate::common::*;
use ei_server::codec::{parse_reply, parse_request, Operation, Reply, Request};
use ei_server::metrics::Metrics;
use ei_server::model::Field;
use ei_server::service::Service;
use proptest::prelude::*;
use std::sync::Arc;

const SAMPLE_NOTIFY_OWNER: &str = "SE-OTHER-EI";

/// The three operations' samples, filled in (the notification made from the Update
/// sample, owned by another index so it is applied).
fn samples() -> [(Operation, String); 3] {
    let update = fill(SAMPLE_1, "19121212");
    let notify = update
        .replace("UpdateResponder", "ProcessNotificationResponder")
        .replace("urn1:Update>", "urn1:ProcessNotification>")
        .replace(
            "</urn2:dataController>",
            &format!("</urn2:dataController><urn2:owner>{SAMPLE_NOTIFY_OWNER}</urn2:owner>"),
        );
    [
        (Operation::Update, update),
        (Operation::ProcessNotification, notify),
        (Operation::FindContent, fill(SAMPLE_FIND, "19121212")),
    ]
}

/// What gets inserted: characters XML 1.0 forbids, raw and as references, entity
/// references good and bad, stray markup.
const INSERTS: &[&str] = &[
    "\u{1}",
    "\u{0}",
    "\u{1b}",
    "\u{fffe}",
    "&#1;",
    "&#0;",
    "&#x1F;",
    "&#xFFFE;",
    "&#xD800;",
    "&#128512;",
    "&amp;",
    "&lt;",
    "&bogus;",
    "&",
    "<",
    ">",
    "]]>",
    "<![CDATA[x]]>",
    "<!DOCTYPE x>",
    "<?pi x?>",
    "<!-- c -->",
    "<a b='1' b='2'/>",
    "<a b=1/>",
    "\"",
    "'",
    "\r\n",
    " ",
];

#[derive(Clone, Debug)]
enum Mutation {
    FlipBit {
        at: usize,
        bit: u8,
    },
    Truncate {
        at: usize,
    },
    Insert {
        at: usize,
        what: usize,
    },
    DuplicateLine {
        line: usize,
    },
    DuplicateElement {
        which: usize,
    },
    /// An insert inside the text of one of the request's leaf elements: the mutations
    /// that most often still make a valid request, so they reach the store.
    InsertInValue {
        which: usize,
        what: usize,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let at = any::<usize>();
    prop_oneof![
        1 => (at, 0u8..8).prop_map(|(at, bit)| Mutation::FlipBit { at, bit }),
        1 => at.prop_map(|at| Mutation::Truncate { at }),
        1 => (at, 0..INSERTS.len()).prop_map(|(at, what)| Mutation::Insert { at, what }),
        1 => at.prop_map(|line| Mutation::DuplicateLine { line }),
        1 => at.prop_map(|which| Mutation::DuplicateElement { which }),
        1 => (at, 0..INSERTS.len()).prop_map(|(which, what)| Mutation::InsertInValue { which, what }),
    ]
}

/// The elements [`Mutation::DuplicateElement`] picks from (by local name, any prefix).
const ELEMENTS: &[&str] = &[
    "engagementTransaction",
    "engagement",
    "Update",
    "ProcessNotification",
    "FindContent",
    "Body",
    "Header",
    "LogicalAddress",
    "registeredResidentIdentification",
    "serviceDomain",
    "deleteFlag",
];

fn apply(body: &mut Vec<u8>, m: &Mutation) {
    let len = body.len();
    match *m {
        Mutation::FlipBit { at, bit } if len > 0 => body[at % len] ^= 1 << bit,
        Mutation::Truncate { at } => body.truncate(at % (len + 1)),
        Mutation::Insert { at, what } => {
            let at = at % (len + 1);
            body.splice(at..at, INSERTS[what].bytes());
        }
        Mutation::DuplicateLine { line } => {
            let lines: Vec<&[u8]> = body.split_inclusive(|&b| b == b'\n').collect();
            let i = line % lines.len().max(1);
            let mut out = Vec::with_capacity(len * 2);
            for (n, l) in lines.iter().enumerate() {
                out.extend_from_slice(l);
                if n == i {
                    out.extend_from_slice(l);
                }
            }
            *body = out;
        }
        Mutation::DuplicateElement { which } => {
            let name = ELEMENTS[which % ELEMENTS.len()];
            let text = String::from_utf8_lossy(body).into_owned();
            if let Some((start, end)) = element_span(&text, name) {
                let copy = text.as_bytes()[start..end].to_vec();
                body.splice(end..end, copy);
            }
        }
        Mutation::InsertInValue { which, what } => {
            let values = leaf_values(body);
            if !values.is_empty() {
                let at = values[which % values.len()];
                body.splice(at..at, INSERTS[what].bytes());
            }
        }
        _ => {}
    }
}

/// Where the text of each leaf element starts (just after a `>` that closes an opening
/// tag and is followed by text, then a closing tag).
fn leaf_values(body: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    for (i, w) in body.windows(2).enumerate() {
        if w[0] == b'>' && w[1] != b'<' && w[1] != b'\n' && w[1] != b' ' {
            let rest = &body[i + 1..];
            if let Some(lt) = rest.iter().position(|&b| b == b'<') {
                if rest.get(lt + 1) == Some(&b'/') {
                    out.push(i + 1);
                }
            }
        }
    }
    out
}

/// The byte span of the first `<p:name ...>...</p:name>` in `text`.
fn element_span(text: &str, name: &str) -> Option<(usize, usize)> {
    let open = text.find(&format!(":{name}>"))?;
    let start = text[..open].rfind('<')?;
    let close = format!(":{name}>");
    let close_at = text[open + close.len()..].find(&close)? + open + close.len();
    Some((start, close_at + close.len()))
}

/// Well-formed as far as the codec can tell without a second XML library: only
/// characters XML 1.0 allows (the server writes no character references, so none can
/// hide there), and the client reader reads it to the end.
fn assert_well_formed(status: u16, body: &str) -> Reply {
    let bad = body.chars().find(|&c| {
        !matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
    });
    assert_eq!(
        bad, None,
        "a character XML 1.0 forbids in the reply: {body:?}"
    );
    assert!(
        !body.contains("&#"),
        "a character reference in the reply: {body}"
    );
    let reply = parse_reply(body.as_bytes())
        .unwrap_or_else(|e| panic!("the reply does not read back: {e}\n{body}"));
    match (&reply, status) {
        (Reply::Fault { .. }, 500) | (Reply::Result { .. } | Reply::Engagements(_), 200) => {}
        _ => panic!("HTTP {status} with {reply:?}"),
    }
    reply
}

struct Index {
    service: Service,
    runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

impl Index {
    fn new() -> Index {
        let dir = tempfile::tempdir().unwrap();
        let config = test_config(|c| c.data_dir = dir.path().join("data"));
        let store = ei_server::server::open_store(&config, Arc::new(Metrics::default())).unwrap();
        let service = Service::new(config.rules(), config.error_mode, Arc::new(store));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        Index {
            service,
            runtime,
            _dir: dir,
        }
    }

    fn call(&self, op: Operation, body: Vec<u8>) -> Reply {
        let reply = self
            .runtime
            .block_on(self.service.call(op, Some("fuzz"), body.into()));
        assert_well_formed(reply.status, &reply.body)
    }
}

impl Drop for Index {
    fn drop(&mut self) {
        self.service.store().close();
    }
}

/// One mutated body: sent to its operation's endpoint; after an accepted write, the
/// posts it names are looked up and the answer checked too.
/// Answers whether it was a write the index accepted.
fn check(index: &Index, op: Operation, body: Vec<u8>) -> bool {
    let reply = index.call(op, body.clone());
    let accepted_write = op != Operation::FindContent
        && matches!(reply, Reply::Result { code, .. } if code == ei_server::codec::ResultCode::Ok);
    if !accepted_write {
        return false;
    }
    let Ok(Request::Write { transactions, .. }) = parse_request(&body) else {
        panic!("a write the service accepted does not parse");
    };
    for t in transactions.iter().take(3) {
        let field = |f: Field| quick_escape(t.engagement.get(f).unwrap_or_default());
        let find = find_body(
            &field(Field::RegisteredResidentIdentification),
            &field(Field::ServiceDomain),
            "",
        );
        index.call(Operation::FindContent, find.into_bytes());
    }
    true
}

/// One case of the property: a sample with its mutations applied.
fn case() -> impl Strategy<Value = (usize, Vec<Mutation>)> {
    (0usize..3, proptest::collection::vec(mutation(), 1..5))
}

fn mutated(sample: usize, mutations: &[Mutation]) -> (Operation, Vec<u8>) {
    let (op, body) = samples()[sample].clone();
    let mut body = body.into_bytes();
    for m in mutations {
        apply(&mut body, m);
    }
    (op, body)
}

/// Escapes text for an element (the test's own requests; the server's replies are
/// what is under test).
fn quick_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]
    #[test]
    fn mutated_samples_get_well_formed_replies((sample, mutations) in case()) {
        thread_local!(static INDEX: Index = Index::new());
        let (op, body) = mutated(sample, &mutations);
        INDEX.with(|index| check(index, op, body));
    }
}

/// The property is worth its cases only if a good share of them get past the parser
/// and the rules into the store (where a stored bad character would poison later
/// answers). On a fixed seed, so the count is the same every run.
#[test]
fn a_share_of_the_mutated_writes_reach_the_store() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let index = Index::new();
    let rng = TestRng::deterministic_rng(RngAlgorithm::ChaCha);
    let mut runner = TestRunner::new_with_rng(Config::default(), rng);
    let (mut writes, mut accepted) = (0, 0);
    for _ in 0..256 {
        let (sample, mutations) = case().new_tree(&mut runner).unwrap().current();
        let (op, body) = mutated(sample, &mutations);
        writes += usize::from(op != Operation::FindContent);
        accepted += usize::from(check(&index, op, body));
    }
    eprintln!("{accepted} of {writes} mutated writes accepted");
    assert!(
        accepted * 8 >= writes,
        "only {accepted} of {writes} mutated writes reached the store"
    );
}

/// The unmutated samples are accepted (so the mutations start from valid requests) and
/// the stored post is served back.
#[test]
fn samples_are_accepted() {
    let index = Index::new();
    for (op, body) in samples() {
        let reply = index.call(op, body.into_bytes());
        assert!(
            matches!(reply, Reply::Result { .. } | Reply::Engagements(_)),
            "{op}: {reply:?}"
        );
    }
    let find = fill(SAMPLE_FIND, "19121212");
    match index.call(Operation::FindContent, find.into_bytes()) {
        Reply::Engagements(_) => {}
        other => panic!("{other:?}"),
    }
}

/// Each kind of mutation, once, on a fixed position (so a failure names the kind).
#[test]
fn each_mutation_kind() {
    let index = Index::new();
    for (op, body) in samples() {
        let mid = body.len() / 2;
        for m in [
            Mutation::FlipBit { at: mid, bit: 7 },
            Mutation::Truncate { at: mid },
            Mutation::DuplicateLine { line: 9 },
            Mutation::DuplicateElement { which: 0 },
            Mutation::DuplicateElement { which: 1 },
            Mutation::DuplicateElement { which: 4 },
        ]
        .into_iter()
        .chain((0..INSERTS.len()).map(|what| Mutation::Insert { at: mid, what }))
        {
            let mut b = body.clone().into_bytes();
            apply(&mut b, &m);
            check(&index, op, b);
        }
    }
}
