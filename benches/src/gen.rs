//! Posts with a region's variety for the import and restore benchmarks (`ei-gen`),
//! written as the Java index's MySQL export or as JSON lines.

use sha2::{Digest, Sha256};
use std::fmt::Write as _;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// `SELECT * FROM engagement_index_table INTO OUTFILE`: TAB-separated, `\N`.
    MysqlTsv,
    /// JSON lines with the contract's field names.
    Jsonl,
}

/// Service domains of the generated posts (ei-fill draws from as many).
pub(crate) const DOMAINS: [&str; 25] = [
    "riv:clinicalprocess:healthcond:description",
    "riv:clinicalprocess:healthcond:actoutcome",
    "riv:clinicalprocess:healthcond:basic",
    "riv:clinicalprocess:activityprescription:actoutcome",
    "riv:clinicalprocess:activity:request",
    "riv:clinicalprocess:activity:actions",
    "riv:clinicalprocess:logistics:logistics",
    "riv:clinicalprocess:healthcond:certificate",
    "riv:careprocess:masterdata:pat",
    "riv:crm:scheduling",
    "riv:crm:requeststatus",
    "riv:ehr:patientsummary",
    "riv:ehr:log:querying",
    "riv:clinicalprocess:healthcond:rheuma",
    "riv:clinicalprocess:healthcond:radiology",
    "riv:clinicalprocess:activityprescription:medication",
    "riv:clinicalprocess:healthcond:vaccination",
    "riv:infrastructure:directory:employee",
    "riv:clinicalprocess:dental:chart",
    "riv:clinicalprocess:maternity:record",
    "riv:clinicalprocess:lab:referral",
    "riv:clinicalprocess:lab:result",
    "riv:clinicalprocess:healthcond:alert",
    "riv:clinicalprocess:healthcond:diagnosis",
    "riv:clinicalprocess:activity:careplan",
];

/// Categorizations of the generated posts (shared with ei-fill).
pub(crate) const CATEGORIES: [&str; 12] = [
    "voo",
    "vko",
    "vkm",
    "ovr",
    "und-kkm-ure",
    "und-bdi-ure",
    "und-kon-ure",
    "upp-lab",
    "dia",
    "alt",
    "med",
    "vac",
];

/// Pseudo-random choices (xorshift64*), deterministic per seed.
pub struct Generator {
    state: u64,
    residents: u64,
}

impl Generator {
    /// A generator for `posts` posts (about 8 per resident).
    pub fn new(seed: u64, posts: u64) -> Generator {
        Generator {
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            residents: (posts / 8).max(1),
        }
    }

    fn next(&mut self) -> u64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn datetime(&mut self) -> (u64, u64, u64, u64, u64, u64) {
        let v = self.next();
        (
            2015 + v % 10,
            1 + (v >> 8) % 12,
            1 + (v >> 16) % 28,
            (v >> 24) % 24,
            (v >> 32) % 60,
            (v >> 40) % 60,
        )
    }

    /// Post number `i` (its key is unique: the business object id carries `i`).
    pub fn post(&mut self, i: u64, format: OutputFormat, out: &mut String) {
        // Residents are spread over the range so their posts do not arrive sorted.
        let resident = format!(
            "{}{:010}",
            19 + (i % 2),
            (i.wrapping_mul(2_654_435_761) % self.residents) * 7919 % 10_000_000_000
        );
        let domain = DOMAINS[self.below(25) as usize];
        let category = CATEGORIES[self.below(12) as usize];
        let logical_address = format!("SE2321000016-{:04X}", self.below(400));
        let boi = if self.below(10) < 7 {
            let (a, b) = (self.next(), self.next());
            format!(
                "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
                a >> 32,
                (a >> 16) & 0xffff,
                a & 0xfff,
                b >> 48,
                i
            )
        } else {
            format!("NA-{i}")
        };
        let cpi = if self.below(10) == 0 {
            format!("{:032x}", self.next())
        } else {
            "NA".to_owned()
        };
        let source = format!("SE2321000016-S{:03}", self.below(50));
        let controller = format!("SE2321000016-D{:02}", self.below(30));
        let owner = if self.below(20) == 0 {
            "SE2321000016-EI2"
        } else {
            "5565594230"
        };
        let c = self.datetime();
        let m = self.datetime();
        let u = (self.below(3) == 0).then(|| self.datetime());
        match format {
            OutputFormat::MysqlTsv => {
                let mut h = Sha256::new();
                for p in [
                    &resident,
                    domain,
                    category,
                    &logical_address,
                    &boi,
                    &source,
                    &controller,
                    owner,
                    &cpi,
                ] {
                    h.update(p.as_bytes());
                }
                for b in h.finalize() {
                    let _ = write!(out, "{b:02x}");
                }
                let dt = |t: (u64, u64, u64, u64, u64, u64)| {
                    format!(
                        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
                        t.0, t.1, t.2, t.3, t.4, t.5
                    )
                };
                let u = u.map(dt).unwrap_or_else(|| "\\N".to_owned());
                let _ = writeln!(
                    out,
                    "\t{boi}\t{category}\t{cpi}\t{}\t{controller}\t{logical_address}\t{}\t{owner}\t{resident}\t{domain}\t{source}\t{u}",
                    dt(c),
                    dt(m)
                );
            }
            OutputFormat::Jsonl => {
                let ts = |t: (u64, u64, u64, u64, u64, u64)| {
                    format!(
                        "{:04}{:02}{:02}{:02}{:02}{:02}",
                        t.0, t.1, t.2, t.3, t.4, t.5
                    )
                };
                let u = u
                    .map(|u| format!(",\"updateTime\":\"{}\"", ts(u)))
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "{{\"registeredResidentIdentification\":\"{resident}\",\"serviceDomain\":\"{domain}\",\"categorization\":\"{category}\",\"logicalAddress\":\"{logical_address}\",\"businessObjectInstanceIdentifier\":\"{boi}\",\"clinicalProcessInterestId\":\"{cpi}\",\"sourceSystem\":\"{source}\",\"dataController\":\"{controller}\",\"owner\":\"{owner}\",\"mostRecentContent\":\"{}\",\"creationTime\":\"{}\"{u}}}",
                    ts(m),
                    ts(c)
                );
            }
        }
    }
}
