//! The benchmark data: the platform's own 1000-post Update sample with its resident
//! ids and `mostRecentContent` patched in place, so every body, key and value has
//! exactly the sample's sizes.
//!
//! Posts are numbered by *body*: body `k` holds 1000 posts of the four residents
//! `4k..4k+3` (250 each: 5 service domains × 5 categorizations × 10 posts). So a
//! FindContent by resident + domain returns 50 posts, by resident + domain +
//! categorization 10. Single-post residents (for 1-row scans) live in their own id
//! range, see [`single_resident`].

use ei_server::model::{
    Action, Engagement, Field, FindQuery, RawEngagement, Timestamp, Transaction,
};
use ei_server::rules::{self, RulesConfig};

/// The sample Update with 1000 posts for 4 residents (about 0.9 MB).
pub const SAMPLE_1000: &str = include_str!("../../tests/samples/Update_1000_OK.xml");
/// The sample FindContent request.
pub const SAMPLE_FIND: &str = include_str!("../../tests/samples/FindContent_OK.xml");
/// The LogicalAddress the samples are sent to: run the server with this HSA-id.
pub const INDEX_HSA_ID: &str = "5565594230";
/// The platform HSA-id for the rules (any id the samples do not use).
pub const PLATFORM_HSA_ID: &str = "platform-hsa-id";
/// Posts per sample body.
pub const POSTS_PER_BODY: u64 = 1000;
/// Residents per sample body.
pub const RESIDENTS_PER_BODY: u64 = 4;
/// The sample's mostRecentContent.
pub const SAMPLE_MRC: u64 = 20150310104108;
/// The sample's service domains (`urn:riv:test:domain-1` … `-5`).
pub const DOMAINS: u64 = 5;

/// Resident number `n` as a 12-digit id (`19` + 10 digits).
pub fn resident(n: u64) -> String {
    format!("{:012}", 190_000_000_000 + n)
}

/// The id of single-post resident `n` (`29` + 10 digits): a range of its own.
pub fn single_resident(n: u64) -> String {
    format!("{:012}", 290_000_000_000 + n)
}

/// The `i`-th of a strictly increasing series of valid timestamps after the sample's
/// (one second apart, months of 28 days), used as a changed mostRecentContent.
pub fn timestamp(i: u64) -> u64 {
    let (s, m, h) = (i % 60, (i / 60) % 60, (i / 3600) % 24);
    let d = i / 86_400;
    let (day, month, year) = (1 + d % 28, 1 + (d / 28) % 12, 2016 + d / (28 * 12));
    ((((year * 100 + month) * 100 + day) * 100 + h) * 100 + m) * 100 + s
}

/// The sample body with byte offsets of every resident id and mostRecentContent, so a
/// body for other residents or another timestamp is a copy and a few patches.
#[derive(Clone)]
pub struct UpdateTemplate {
    bytes: Vec<u8>,
    residents: [Vec<usize>; 4],
    mrcs: Vec<usize>,
}

impl UpdateTemplate {
    /// The 1000-post sample.
    pub fn sample_1000() -> UpdateTemplate {
        UpdateTemplate::new(SAMPLE_1000)
    }

    /// A template from a sample with `${citizenId1..4}` placeholders.
    pub fn new(sample: &str) -> UpdateTemplate {
        let mut bytes = Vec::with_capacity(sample.len());
        let mut residents: [Vec<usize>; 4] = Default::default();
        let mut rest = sample;
        while let Some(i) = rest.find("${citizenId") {
            bytes.extend_from_slice(&rest.as_bytes()[..i]);
            let n = (rest.as_bytes()[i + 11] - b'1') as usize;
            residents[n].push(bytes.len());
            bytes.extend_from_slice(resident(0).as_bytes());
            rest = &rest[i + "${citizenId1}".len()..];
        }
        bytes.extend_from_slice(rest.as_bytes());
        let tag = format!("{}>", Field::MostRecentContent);
        let tag = tag.as_bytes();
        let mrcs = (0..bytes.len().saturating_sub(tag.len() + 14))
            .filter(|&i| &bytes[i..i + tag.len()] == tag && bytes[i + tag.len()].is_ascii_digit())
            .map(|i| i + tag.len())
            .collect();
        UpdateTemplate {
            bytes,
            residents,
            mrcs,
        }
    }

    /// Posts in one body.
    pub fn posts(&self) -> usize {
        self.mrcs.len()
    }

    /// Body `k` (residents `4k..4k+3`) with every mostRecentContent set to `mrc`.
    pub fn body(&self, k: u64, mrc: u64) -> Vec<u8> {
        let mut out = self.bytes.clone();
        for (j, offsets) in self.residents.iter().enumerate() {
            let id = resident(k * RESIDENTS_PER_BODY + j as u64);
            for &o in offsets {
                out[o..o + 12].copy_from_slice(id.as_bytes());
            }
        }
        let mrc = format!("{mrc:014}");
        for &o in &self.mrcs {
            out[o..o + 14].copy_from_slice(mrc.as_bytes());
        }
        out
    }
}

/// The sample's posts, validated once; other residents and timestamps are swapped in
/// without parsing, for the store benches.
#[derive(Clone)]
pub struct Posts {
    template: Vec<Transaction>,
}

impl Default for Posts {
    fn default() -> Self {
        Posts::new()
    }
}

/// The resident's place among a key's parts.
const RESIDENT: usize = Field::RegisteredResidentIdentification.index();

impl Posts {
    /// Parses and validates body 0 of the 1000-post sample.
    pub fn new() -> Posts {
        let body = UpdateTemplate::sample_1000().body(0, SAMPLE_MRC);
        Posts {
            template: transactions(&body).expect("the sample is a valid Update"),
        }
    }

    /// Body `k`'s transactions with mostRecentContent `mrc`.
    pub fn body(&self, k: u64, mrc: u64) -> Vec<Transaction> {
        let ids: Vec<String> = (0..RESIDENTS_PER_BODY)
            .map(|j| resident(k * RESIDENTS_PER_BODY + j))
            .collect();
        let first = self.template[0].engagement.key.parts()[RESIDENT].clone();
        let mrc = Timestamp::from_u64(mrc).expect("valid timestamp");
        self.template
            .iter()
            .map(|t| {
                let mut parts = t.engagement.key.parts().clone();
                let j = resident_slot(&parts[RESIDENT], &first);
                parts[RESIDENT] = ids[j].clone();
                with_key(t, parts, mrc)
            })
            .collect()
    }

    /// `n` single-post residents from `first` on, one post each (the sample's first
    /// post with its resident replaced).
    pub fn singles(&self, first: u64, n: u64) -> Vec<Transaction> {
        let t = &self.template[0];
        let mrc = Timestamp::from_u64(SAMPLE_MRC).expect("valid timestamp");
        (first..first + n)
            .map(|i| {
                let mut parts = t.engagement.key.parts().clone();
                parts[RESIDENT] = single_resident(i);
                with_key(t, parts, mrc)
            })
            .collect()
    }

    /// The key of post `j` (0..1000) of body `k`, as the store encodes it.
    pub fn store_key(&self, k: u64, j: usize) -> Vec<u8> {
        let mut parts = self.template[j].engagement.key.parts().clone();
        let first = self.template[0].engagement.key.parts()[RESIDENT].clone();
        let slot = resident_slot(&parts[RESIDENT], &first);
        parts[RESIDENT] = resident(k * RESIDENTS_PER_BODY + slot as u64);
        let key = rules::key_from_parts(parts).expect("valid key");
        ei_server::store::schema::encode_key(&key)
    }
}

/// Which of the body's four residents `id` is (ids of body 0 are `0..4`).
fn resident_slot(id: &str, first: &str) -> usize {
    let n: u64 = id.parse().expect("numeric id");
    let f: u64 = first.parse().expect("numeric id");
    (n - f) as usize
}

fn with_key(t: &Transaction, parts: [String; 9], mrc: Timestamp) -> Transaction {
    Transaction {
        action: Action::Save,
        engagement: Engagement {
            key: rules::key_from_parts(parts).expect("valid key"),
            most_recent_content: Some(mrc),
            creation_time: t.engagement.creation_time,
            update_time: t.engagement.update_time,
        },
    }
}

/// Parses an Update body and validates it as the server does.
pub fn transactions(body: &[u8]) -> anyhow::Result<Vec<Transaction>> {
    match ei_server::codec::parse_request(body)? {
        ei_server::codec::Request::Write {
            logical_address,
            transactions,
            ..
        } => Ok(rules::validate_update(
            &RulesConfig::new(INDEX_HSA_ID, PLATFORM_HSA_ID),
            logical_address.as_deref(),
            transactions,
        )?),
        _ => anyhow::bail!("not an Update"),
    }
}

/// The sample's service domain `d` (1..=5).
pub fn domain(d: u64) -> String {
    format!("urn:riv:test:domain-{d}")
}

/// The sample's categorization `c` (1..=5).
pub fn category(c: u64) -> String {
    format!("category-{c}")
}

/// A FindContent query: resident `r` and domain `d`, optionally categorization `c`.
pub fn query(resident_id: String, d: u64, c: Option<u64>) -> FindQuery {
    FindQuery {
        registered_resident_identification: resident_id,
        service_domain: domain(d),
        categorization: c.map(category),
        filters: Vec::new(),
        most_recent_content: None,
    }
}

/// A FindContent request body for resident `resident_id`, domain `d` and optionally
/// categorization `c`.
pub fn find_body(resident_id: &str, d: u64, c: Option<u64>) -> String {
    let mut q = RawEngagement::default();
    q.set(Field::RegisteredResidentIdentification, resident_id);
    q.set(Field::ServiceDomain, domain(d));
    if let Some(c) = c {
        q.set(Field::Categorization, category(c));
    }
    let mut out = String::with_capacity(700);
    ei_server::codec::write_find_content_request(&mut out, INDEX_HSA_ID, &q);
    out
}

/// An Update body of single-post residents `first..first+n` (for 1-post Updates).
pub fn singles_body(posts: &Posts, first: u64, n: u64) -> String {
    let txs = posts.singles(first, n);
    let mut out = String::with_capacity(800 * n as usize + 600);
    ei_server::codec::write_write_request(
        &mut out,
        ei_server::operation::WriteOperation::Update,
        INDEX_HSA_ID,
        &txs,
    );
    out
}

/// 50 engagements as stored (with creation and update time), for the reply writer.
pub fn stored_engagements(n: usize) -> Vec<Engagement> {
    let t = Timestamp::from_u64(20261122203000).expect("valid timestamp");
    Posts::new()
        .body(0, SAMPLE_MRC)
        .into_iter()
        .take(n)
        .map(|tx| Engagement {
            creation_time: Some(t),
            update_time: Some(t),
            ..tx.engagement
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_patches_residents_and_timestamps() {
        let t = UpdateTemplate::sample_1000();
        assert_eq!(t.posts(), 1000);
        let body = t.body(7, timestamp(5));
        let txs = transactions(&body).unwrap();
        assert_eq!(txs.len(), 1000);
        let ids: std::collections::BTreeSet<_> = txs
            .iter()
            .map(|t| {
                t.engagement
                    .key
                    .registered_resident_identification()
                    .to_owned()
            })
            .collect();
        assert_eq!(ids.len(), 4);
        assert!(ids.contains(&resident(28)) && ids.contains(&resident(31)));
        assert!(txs
            .iter()
            .all(|t| t.engagement.most_recent_content.unwrap().as_u64() == timestamp(5)));
    }

    #[test]
    fn posts_match_the_parsed_body() {
        let posts = Posts::new();
        let body = UpdateTemplate::sample_1000().body(3, timestamp(9));
        assert_eq!(posts.body(3, timestamp(9)), transactions(&body).unwrap());
        let key = posts.store_key(3, 999);
        assert_eq!(
            key,
            ei_server::store::schema::encode_key(&posts.body(3, SAMPLE_MRC)[999].engagement.key)
        );
    }

    #[test]
    fn timestamps_are_valid_and_increasing() {
        let mut last = SAMPLE_MRC;
        for i in (0..20_000_000).step_by(9_973) {
            let t = timestamp(i);
            assert!(Timestamp::from_u64(t).is_ok(), "{t}");
            assert!(t > last);
            last = t;
        }
    }

    #[test]
    fn single_and_find_bodies_parse() {
        let body = singles_body(&Posts::new(), 5, 3);
        assert_eq!(transactions(body.as_bytes()).unwrap().len(), 3);
        let f = find_body(&resident(1), 2, Some(3));
        assert!(ei_server::codec::parse_request(f.as_bytes()).is_ok());
    }
}
