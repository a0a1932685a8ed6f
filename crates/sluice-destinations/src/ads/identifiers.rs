//! Audience identifiers: which platform matches on what, each platform's documented
//! normalisation, and SHA-256 as lowercase hex.
//!
//! Sources (each rule below names the one it follows):
//! - Meta: <https://developers.facebook.com/documentation/ads-commerce/marketing-api/audiences/guides/custom-audiences>
//!   ("Hashing and Normalization for Multi-Key" table, "Hashing" examples, "External Identifiers").
//! - Google: Data Manager API "Format user data"
//!   <https://developers.google.com/data-manager/api/get-started/formatting> and the `AudienceMember`,
//!   `UserData` and `AddressInfo` references under <https://developers.google.com/data-manager/api/reference/rest/v1/>.
//! - TikTok: "How to create a Custom Audience with a customer file" (supported IDs and formats)
//!   <https://ads.tiktok.com/help/article/how-to-create-a-custom-audience-with-a-customer-file>.
//! - LinkedIn: DMP Segment Users
//!   <https://learn.microsoft.com/en-us/linkedin/marketing/matched-audiences/create-and-manage-segment-users>.
//! - Snapchat: Customer Lists <https://developers.snap.com/api/marketing-api/Ads-API/customer-lists>.
//!
//! Error messages name the identifier and what is wrong, never the value: they are stored in
//! run outcomes, and the values are personal data.

use std::fmt;
use std::str::FromStr;

/// A kind of personal identifier an audience member can be matched on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Identifier {
    Email,
    Phone,
    FirstName,
    LastName,
    Gender,
    DateOfBirth,
    City,
    State,
    Zip,
    Country,
    MobileAdId,
    ExternalId,
}

impl Identifier {
    /// Every identifier, in the order members list them.
    pub const ALL: [Identifier; 12] = [
        Identifier::Email,
        Identifier::Phone,
        Identifier::FirstName,
        Identifier::LastName,
        Identifier::Gender,
        Identifier::DateOfBirth,
        Identifier::City,
        Identifier::State,
        Identifier::Zip,
        Identifier::Country,
        Identifier::MobileAdId,
        Identifier::ExternalId,
    ];

    /// Sync mapping field names: "email","phone","first_name","last_name","gender","date_of_birth","city","state","zip","country","mobile_ad_id","external_id"
    pub fn field_name(self) -> &'static str {
        match self {
            Identifier::Email => "email",
            Identifier::Phone => "phone",
            Identifier::FirstName => "first_name",
            Identifier::LastName => "last_name",
            Identifier::Gender => "gender",
            Identifier::DateOfBirth => "date_of_birth",
            Identifier::City => "city",
            Identifier::State => "state",
            Identifier::Zip => "zip",
            Identifier::Country => "country",
            Identifier::MobileAdId => "mobile_ad_id",
            Identifier::ExternalId => "external_id",
        }
    }

    /// The identifier a sync mapping field names, if any.
    pub fn from_field(name: &str) -> Option<Identifier> {
        Identifier::ALL.into_iter().find(|identifier| identifier.field_name() == name)
    }
}

impl fmt::Display for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.field_name())
    }
}

/// An ad platform with customer-list audiences.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    Meta,
    Google,
    TikTok,
    LinkedIn,
    Snapchat,
}

impl Platform {
    /// The platform's name as shown in messages.
    pub fn name(self) -> &'static str {
        match self {
            Platform::Meta => "Meta",
            Platform::Google => "Google",
            Platform::TikTok => "TikTok",
            Platform::LinkedIn => "LinkedIn",
            Platform::Snapchat => "Snapchat",
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Settings that change how values are normalised.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct NormalizeOptions {
    /// ISO 3166-1 alpha-2 used for phone numbers written without +country
    pub default_country: Option<String>,
}

/// Whether the platform matches on this identifier.
pub fn supports(platform: Platform, identifier: Identifier) -> bool {
    use Identifier::*;
    match platform {
        // Meta's multi-key schema: EXTERN_ID EMAIL PHONE GEN DOBY DOBM DOBD LN FN FI CT ST ZIP MADID COUNTRY.
        Platform::Meta => true,
        // Data Manager API AudienceMember: userData (email, phone, address = given/family name,
        // region code, postal code), mobileData, userIdData.
        Platform::Google => {
            matches!(identifier, Email | Phone | FirstName | LastName | Zip | Country | MobileAdId | ExternalId)
        }
        // Customer file IDs: email, phone, MAID (IDFA/GAID).
        Platform::TikTok => matches!(identifier, Email | Phone | MobileAdId),
        // DMP segment users: userIds SHA256_EMAIL and GOOGLE_AID. The elements' firstName,
        // lastName and country are documented as plain text, so they are not sent (data
        // minimisation: only digests, and the device id below, leave the machine).
        Platform::LinkedIn => matches!(identifier, Email | MobileAdId),
        // Customer list schemas: EMAIL_SHA256, PHONE_SHA256, MOBILE_AD_ID_SHA256.
        Platform::Snapchat => matches!(identifier, Email | Phone | MobileAdId),
    }
}

/// Whether the platform takes this identifier as a SHA-256 digest (rather than plain text).
/// Only meaningful where [`supports`] is true.
pub fn is_hashed(platform: Platform, identifier: Identifier) -> bool {
    use Identifier::*;
    match platform {
        // "Do not hash" MADID. EXTERN_ID "you don't need to hash", but may: hashing keeps the
        // advertiser's ids private and matches Meta's Conversions API, which hashes external_id.
        Platform::Meta => identifier != MobileAdId,
        // Region and postal codes are sent plain; mobile ids and user ids carry no hashing rule.
        Platform::Google => matches!(identifier, Email | Phone | FirstName | LastName),
        Platform::TikTok | Platform::Snapchat => true,
        // The e-mail is hashed (SHA256_EMAIL); GOOGLE_AID is a device id LinkedIn documents as
        // plain, the same exception as Meta's MADID.
        Platform::LinkedIn => identifier == Email,
    }
}

/// SHA-256 of the UTF-8 text, as lowercase hex.
pub fn sha256_hex(text: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    let mut out = String::with_capacity(64);
    for byte in digest.as_ref() {
        out.push(char::from_digit(u32::from(byte >> 4), 16).unwrap_or('0'));
        out.push(char::from_digit(u32::from(byte & 0x0f), 16).unwrap_or('0'));
    }
    out
}

/// Whether the text is a SHA-256 digest in hex (either case).
pub fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Separates Meta's three birth-date digests (DOBY, DOBM, DOBD) in a date-of-birth wire value.
pub const META_BIRTH_DATE_SEPARATOR: char = ',';

/// The value to send: normalised by the platform's documented rules, then SHA-256 lowercase hex where the platform wants it hashed. A value that already is a 64-hex SHA-256 digest passes through (lowercased). Ok(None) when blank. Err(message) names the identifier and what is wrong but NEVER contains the value itself (it is stored in outcomes).
///
/// Meta matches a birth date as three keys (DOBY, DOBM, DOBD), so its date-of-birth wire value is
/// the three digests joined by [`META_BIRTH_DATE_SEPARATOR`], year first; three such digests
/// given as input pass through.
pub fn wire_value(
    platform: Platform,
    identifier: Identifier,
    raw: &str,
    options: &NormalizeOptions,
) -> Result<Option<String>, String> {
    Ok(match prepare(platform, identifier, raw, options)? {
        Prepared::Blank => None,
        Prepared::Hashed(digest) => Some(digest),
        Prepared::Plain(text) if !is_hashed(platform, identifier) => Some(text),
        Prepared::Plain(text) if platform == Platform::Meta && identifier == Identifier::DateOfBirth => {
            // `text` is YYYYMMDD, checked by `birth_date`.
            let parts = [&text[0..4], &text[4..6], &text[6..8]];
            Some(parts.map(sha256_hex).join(&META_BIRTH_DATE_SEPARATOR.to_string()))
        }
        Prepared::Plain(text) => Some(sha256_hex(&text)),
    })
}

/// The normalised plain text before hashing (tests and docs only; never log it).
pub fn normalize(
    platform: Platform,
    identifier: Identifier,
    raw: &str,
    options: &NormalizeOptions,
) -> Result<Option<String>, String> {
    Ok(match prepare(platform, identifier, raw, options)? {
        Prepared::Blank => None,
        Prepared::Hashed(text) | Prepared::Plain(text) => Some(text),
    })
}

/// A raw value after the platform's rules.
enum Prepared {
    Blank,
    /// Already a digest (lowercased); sent as is.
    Hashed(String),
    /// Normalised text, hashed on the way out where the platform wants it.
    Plain(String),
}

fn problem(identifier: Identifier, message: impl fmt::Display) -> String {
    format!("{identifier}: {message}")
}

fn prepare(
    platform: Platform,
    identifier: Identifier,
    raw: &str,
    options: &NormalizeOptions,
) -> Result<Prepared, String> {
    if !supports(platform, identifier) {
        return Err(problem(identifier, format_args!("{platform} does not match audience members on {identifier}")));
    }
    let text = raw.trim();
    if text.is_empty() {
        return Ok(Prepared::Blank);
    }
    let hashed = is_hashed(platform, identifier);
    if hashed && is_sha256_hex(text) {
        if platform == Platform::Meta && identifier == Identifier::DateOfBirth {
            return Err(problem(
                identifier,
                "Meta matches birth year, month and day as three separate digests; give the plain date \
                 (YYYY-MM-DD) or the three SHA-256 digests separated by commas",
            ));
        }
        return Ok(Prepared::Hashed(text.to_ascii_lowercase()));
    }
    if platform == Platform::Meta && identifier == Identifier::DateOfBirth {
        let parts: Vec<&str> = text.split(META_BIRTH_DATE_SEPARATOR).map(str::trim).collect();
        if parts.len() == 3 && parts.iter().all(|p| is_sha256_hex(p)) {
            return Ok(Prepared::Hashed(parts.join(&META_BIRTH_DATE_SEPARATOR.to_string()).to_ascii_lowercase()));
        }
    }
    if !hashed && is_sha256_hex(text) && !matches!(identifier, Identifier::ExternalId) {
        return Err(problem(
            identifier,
            format_args!("{platform} takes {identifier} unhashed, but this value is a SHA-256 digest"),
        ));
    }
    let normalized = match identifier {
        Identifier::Email => email(platform, text)?,
        Identifier::Phone => phone(platform, text, options)?,
        Identifier::FirstName | Identifier::LastName => name(platform, identifier, text)?,
        Identifier::Gender => match gender(text)? {
            Some(value) => value,
            None => return Ok(Prepared::Blank),
        },
        Identifier::DateOfBirth => birth_date(text)?,
        Identifier::City => city(text)?,
        Identifier::State => state(text)?,
        Identifier::Zip => zip(platform, text)?,
        Identifier::Country => country(platform, text)?,
        Identifier::MobileAdId => match mobile_ad_id(platform, text)? {
            Some(value) => value,
            None => return Ok(Prepared::Blank),
        },
        // Ids are compared exactly: lower-casing could merge two customers' ids.
        Identifier::ExternalId => text.to_string(),
    };
    Ok(Prepared::Plain(normalized))
}

/// E-mail: trim and lowercase (every platform). Google also removes intermediate whitespace and,
/// for gmail.com and googlemail.com only, the dots and any `+suffix` of the local part
/// ("cloudy.sanfrancisco+shopping@gmail.com" → "cloudysanfrancisco@gmail.com").
fn email(platform: Platform, text: &str) -> Result<String, String> {
    let mut lower = text.to_lowercase();
    if platform == Platform::Google {
        lower.retain(|c| !c.is_whitespace());
    }
    let invalid = || problem(Identifier::Email, "not an e-mail address (expected name@domain)");
    let (local, domain) = lower.rsplit_once('@').ok_or_else(invalid)?;
    if local.is_empty()
        || domain.is_empty()
        || local.contains('@')
        || !domain.contains('.')
        || domain.starts_with('.')
        || domain.ends_with('.')
        || lower.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(invalid());
    }
    if platform == Platform::Google && matches!(domain, "gmail.com" | "googlemail.com") {
        let local = local.split('+').next().unwrap_or_default().replace('.', "");
        if local.is_empty() {
            return Err(invalid());
        }
        return Ok(format!("{local}@{domain}"));
    }
    Ok(lower)
}

/// The region used for numbers written without their country code.
fn default_region(options: &NormalizeOptions) -> Result<Option<phonenumber::country::Id>, String> {
    match options.default_country.as_deref().map(str::trim).filter(|c| !c.is_empty()) {
        None => Ok(None),
        Some(code) => region(code)
            .map(Some)
            .ok_or_else(|| problem(Identifier::Phone, "`default_country` is not a two-letter ISO 3166-1 country code")),
    }
}

/// The region's national (trunk) prefix: "0" in most of Europe, "1" in the NANP.
fn trunk_prefix(region: phonenumber::country::Id) -> Option<&'static str> {
    phonenumber::metadata::DATABASE.by_id(region.as_ref()).and_then(|meta| meta.national_prefix())
}

/// An ISO 3166-1 alpha-2 code known to the phone-number metadata (UK is read as GB).
fn region(code: &str) -> Option<phonenumber::country::Id> {
    let upper = code.trim().to_ascii_uppercase();
    let upper = if upper == "UK" { "GB".to_string() } else { upper };
    if upper.len() != 2 || !upper.bytes().all(|b| b.is_ascii_uppercase()) {
        return None;
    }
    phonenumber::country::Id::from_str(&upper).ok()
}

/// Phone: parsed to E.164 (a number written with `+` or `00`-style prefixes, or the national
/// form of `default_country`, or digits that start with a country code). Meta and Snapchat want
/// "symbols, letters and leading zeros removed" with the country code: the E.164 digits without
/// `+`. TikTok's article shows "+37493828222" but its hashed example is the digest of
/// "37493828222", so TikTok gets the digits too. Google wants E.164 with `+`.
fn phone(platform: Platform, text: &str, options: &NormalizeOptions) -> Result<String, String> {
    let default = default_region(options)?;
    let valid =
        |number: Result<phonenumber::PhoneNumber, phonenumber::ParseError>| number.ok().filter(phonenumber::is_valid);
    let number = if text.starts_with('+') {
        valid(phonenumber::parse(None, text))
    } else {
        let digits: String = text.chars().filter(char::is_ascii_digit).collect();
        if digits.is_empty() {
            return Err(problem(Identifier::Phone, "has no digits"));
        }
        // Read as "country code + number" (Meta: "remove leading zeros", which also drops a 00
        // prefix), or as a national number of the default country.
        let international = || {
            let digits = digits.trim_start_matches('0');
            (!digits.is_empty()).then(|| valid(phonenumber::parse(None, format!("+{digits}")))).flatten()
        };
        let national = || default.and_then(|region| valid(phonenumber::parse(Some(region), text)));
        // Where national numbers are written after a trunk 0 (FR, DE, GB…), digits without it
        // are most likely a country code and a number: the form Meta asks for, and the form this
        // function returns for Meta, so normalising twice changes nothing. Elsewhere (NANP, where
        // the trunk 1 is usually left out; countries without a trunk prefix) national numbers
        // are written bare, so they are read first.
        let international_first = match default {
            None => true,
            Some(region) => trunk_prefix(region) == Some("0") && !digits.starts_with('0'),
        };
        if international_first {
            international().or_else(national)
        } else {
            national().or_else(international)
        }
    };
    let number = number.ok_or_else(|| {
        let hint = if default.is_some() {
            "write it with its country code, e.g. +33 6 12 34 56 78"
        } else {
            "write it with its country code, e.g. +33 6 12 34 56 78, or set `default_country` for numbers written in national form"
        };
        problem(Identifier::Phone, format_args!("not a valid phone number; {hint}"))
    })?;
    let e164 = number.format().mode(phonenumber::Mode::E164).to_string();
    Ok(match platform {
        Platform::Google => e164,
        _ => e164.trim_start_matches('+').to_string(),
    })
}

/// Names. Meta: "a-z only, lowercase, no punctuation, special characters in UTF-8": letters of
/// any script are kept (lower-cased), everything else (spaces, punctuation, digits) removed.
/// Google: lowercase, no punctuation, trimmed, without prefixes (Mrs.) or suffixes (Jr.).
/// No other platform is sent names.
fn name(platform: Platform, identifier: Identifier, text: &str) -> Result<String, String> {
    let result = match platform {
        Platform::Meta => text.to_lowercase().chars().filter(|c| c.is_alphabetic()).collect::<String>(),
        Platform::Google => {
            let cleaned: String = text
                .to_lowercase()
                .chars()
                .map(|c| if c.is_whitespace() { ' ' } else { c })
                .filter(|c| c.is_alphanumeric() || *c == ' ')
                .collect();
            let mut words: Vec<&str> = cleaned.split_whitespace().collect();
            const PREFIXES: [&str; 6] = ["mr", "mrs", "ms", "miss", "dr", "prof"];
            const SUFFIXES: [&str; 7] = ["jr", "sr", "ii", "iii", "iv", "phd", "md"];
            if identifier == Identifier::FirstName && words.len() > 1 && PREFIXES.contains(&words[0]) {
                words.remove(0);
            }
            if identifier == Identifier::LastName && words.len() > 1 && SUFFIXES.contains(&words[words.len() - 1]) {
                words.pop();
            }
            words.join(" ")
        }
        // `supports` keeps names from every other platform (LinkedIn takes them only unhashed).
        _ => {
            return Err(problem(identifier, format_args!("{platform} does not match audience members on {identifier}")))
        }
    };
    if !result.chars().any(char::is_alphabetic) {
        return Err(problem(identifier, "has no letters"));
    }
    Ok(result)
}

/// Gender (Meta GEN): "m" or "f". Values that say the gender is something else or unknown leave
/// the identifier out rather than rejecting the member.
fn gender(text: &str) -> Result<Option<String>, String> {
    let lower = text.to_lowercase();
    match lower.as_str() {
        "m" | "male" | "man" => Ok(Some("m".into())),
        "f" | "female" | "woman" => Ok(Some("f".into())),
        "o" | "other" | "u" | "unknown" | "x" | "n" | "nb" | "non-binary" | "nonbinary" | "non binary" | "d"
        | "diverse" | "unspecified" | "not specified" | "prefer not to say" => Ok(None),
        _ => Err(problem(Identifier::Gender, "expected m or f (male, female), or other/unknown to leave it out")),
    }
}

/// Date of birth: YYYY-MM-DD (also with `/` or `.`, or YYYYMMDD, or a timestamp starting with a
/// date), year 1900 to the current year as Meta's DOBY asks. Normalised to YYYYMMDD.
fn birth_date(text: &str) -> Result<String, String> {
    let bad = |what: &str| problem(Identifier::DateOfBirth, what);
    let format = "expected a date written YYYY-MM-DD (or YYYYMMDD)";
    if !text.is_ascii() {
        return Err(bad(format));
    }
    let bytes = text.as_bytes();
    let date = if bytes.len() >= 10 && matches!(bytes[4], b'-' | b'/' | b'.') && bytes[7] == bytes[4] {
        if bytes.len() > 10 && !matches!(bytes[10], b'T' | b' ') {
            return Err(bad(format));
        }
        let (y, m, d) = (&text[0..4], &text[5..7], &text[8..10]);
        format!("{y}{m}{d}")
    } else {
        text.to_string()
    };
    if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(format));
    }
    let year: i32 = date[0..4].parse().map_err(|_| bad(format))?;
    let month: u32 = date[4..6].parse().map_err(|_| bad(format))?;
    let day: u32 = date[6..8].parse().map_err(|_| bad(format))?;
    if year < 1900 || year > current_year() {
        return Err(bad("the year must be between 1900 and the current year"));
    }
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err(bad("not a calendar date"));
    }
    Ok(date)
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

/// The current year (UTC), from the system clock.
fn current_year() -> i32 {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| (d.as_secs() / 86_400) as i64)
        .unwrap_or_default();
    // Civil-from-days (Howard Hinnant's algorithm), year only.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2)) as i32
}

/// Latin letters with diacritics to their plain a-z spelling, for keys Meta wants in a-z only.
fn fold_latin(c: char) -> Option<&'static str> {
    Some(match c {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ă' | 'ą' => "a",
        'æ' => "ae",
        'ç' | 'ć' | 'ĉ' | 'ċ' | 'č' => "c",
        'ď' | 'đ' | 'ð' => "d",
        'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ĕ' | 'ė' | 'ę' | 'ě' => "e",
        'ĝ' | 'ğ' | 'ġ' | 'ģ' => "g",
        'ĥ' | 'ħ' => "h",
        'ì' | 'í' | 'î' | 'ï' | 'ĩ' | 'ī' | 'ĭ' | 'į' | 'ı' => "i",
        'ĵ' => "j",
        'ķ' => "k",
        'ĺ' | 'ļ' | 'ľ' | 'ŀ' | 'ł' => "l",
        'ñ' | 'ń' | 'ņ' | 'ň' => "n",
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' | 'ŏ' | 'ő' => "o",
        'œ' => "oe",
        'ŕ' | 'ŗ' | 'ř' => "r",
        'ś' | 'ŝ' | 'ş' | 'š' | 'ș' => "s",
        'ß' => "ss",
        'ţ' | 'ť' | 'ŧ' | 'ț' => "t",
        'þ' => "th",
        'ù' | 'ú' | 'û' | 'ü' | 'ũ' | 'ū' | 'ŭ' | 'ů' | 'ű' | 'ų' => "u",
        'ŵ' => "w",
        'ý' | 'ÿ' | 'ŷ' => "y",
        'ź' | 'ż' | 'ž' => "z",
        _ => return None,
    })
}

/// Lowercase, Latin diacritics folded, then only a-z kept.
fn ascii_letters(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.to_lowercase().chars() {
        if c.is_ascii_lowercase() {
            out.push(c);
        } else if let Some(folded) = fold_latin(c) {
            out.push_str(folded);
        }
    }
    out
}

/// City (Meta CT): "a-z only, lowercase, no punctuation, no special characters, no white space".
/// Latin diacritics are folded (Zürich → zurich) rather than dropped.
fn city(text: &str) -> Result<String, String> {
    let result = ascii_letters(text);
    if result.is_empty() {
        return Err(problem(Identifier::City, "has no letters a-z; give the city's name in the Roman alphabet"));
    }
    Ok(result)
}

/// US states and territories by name, for Meta's "2-character ANSI abbreviation code".
const US_STATES: [(&str, &str); 56] = [
    ("alabama", "al"),
    ("alaska", "ak"),
    ("arizona", "az"),
    ("arkansas", "ar"),
    ("california", "ca"),
    ("colorado", "co"),
    ("connecticut", "ct"),
    ("delaware", "de"),
    ("districtofcolumbia", "dc"),
    ("florida", "fl"),
    ("georgia", "ga"),
    ("hawaii", "hi"),
    ("idaho", "id"),
    ("illinois", "il"),
    ("indiana", "in"),
    ("iowa", "ia"),
    ("kansas", "ks"),
    ("kentucky", "ky"),
    ("louisiana", "la"),
    ("maine", "me"),
    ("maryland", "md"),
    ("massachusetts", "ma"),
    ("michigan", "mi"),
    ("minnesota", "mn"),
    ("mississippi", "ms"),
    ("missouri", "mo"),
    ("montana", "mt"),
    ("nebraska", "ne"),
    ("nevada", "nv"),
    ("newhampshire", "nh"),
    ("newjersey", "nj"),
    ("newmexico", "nm"),
    ("newyork", "ny"),
    ("northcarolina", "nc"),
    ("northdakota", "nd"),
    ("ohio", "oh"),
    ("oklahoma", "ok"),
    ("oregon", "or"),
    ("pennsylvania", "pa"),
    ("rhodeisland", "ri"),
    ("southcarolina", "sc"),
    ("southdakota", "sd"),
    ("tennessee", "tn"),
    ("texas", "tx"),
    ("utah", "ut"),
    ("vermont", "vt"),
    ("virginia", "va"),
    ("washington", "wa"),
    ("westvirginia", "wv"),
    ("wisconsin", "wi"),
    ("wyoming", "wy"),
    ("puertorico", "pr"),
    ("guam", "gu"),
    ("americansamoa", "as"),
    ("northernmarianaislands", "mp"),
    ("usvirginislands", "vi"),
];

/// State (Meta ST): US states as their 2-letter code, lowercase (full names are mapped); other
/// states "in lowercase, with no punctuation, no special characters, and no white space".
fn state(text: &str) -> Result<String, String> {
    let letters = ascii_letters(text);
    if letters.is_empty() {
        return Err(problem(Identifier::State, "has no letters a-z; give the state's name in the Roman alphabet"));
    }
    Ok(US_STATES.iter().find(|(name, _)| *name == letters).map_or(letters, |(_, code)| (*code).to_string()))
}

/// Zip. Meta ZIP: "lowercase, and no white space. For the US, use only the first 5 digits. For
/// the UK, use the Area/District/Sector format" (SW1A 1AA → sw1a1). Google postal_code is sent
/// plain and only trimmed.
fn zip(platform: Platform, text: &str) -> Result<String, String> {
    if platform != Platform::Meta {
        return Ok(text.split_whitespace().collect::<Vec<_>>().join(" "));
    }
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_lowercase();
    let bytes = compact.as_bytes();
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    // US ZIP+4: 12345-6789 or 123456789.
    if (bytes.len() == 10 && bytes[5] == b'-' && digits(&bytes[..5]) && digits(&bytes[6..]))
        || (bytes.len() == 9 && digits(bytes))
    {
        return Ok(compact[..5].to_string());
    }
    if let Some(sector) = uk_postcode_sector(&compact) {
        return Ok(sector);
    }
    if !compact.chars().any(|c| c.is_ascii_alphanumeric()) {
        return Err(problem(Identifier::Zip, "has no letters or digits"));
    }
    Ok(compact)
}

/// A full UK postcode (outward code + inward code, e.g. sw1a1aa) cut to its sector (sw1a1).
fn uk_postcode_sector(compact: &str) -> Option<String> {
    let b = compact.as_bytes();
    if !(5..=7).contains(&b.len()) || !compact.is_ascii() {
        return None;
    }
    let (outward, inward) = compact.split_at(b.len() - 3);
    let i = inward.as_bytes();
    let o = outward.as_bytes();
    let inward_ok = i[0].is_ascii_digit() && i[1].is_ascii_lowercase() && i[2].is_ascii_lowercase();
    // Outward: A9, A9A, A99, AA9, AA9A, AA99.
    let letters = o.iter().take_while(|c| c.is_ascii_lowercase()).count();
    let rest = &o[letters..];
    let outward_ok = (1..=2).contains(&letters)
        && !rest.is_empty()
        && rest[0].is_ascii_digit()
        && rest.len() <= 2
        && rest[1..].iter().all(|c| c.is_ascii_alphanumeric());
    (inward_ok && outward_ok).then(|| format!("{outward}{}", &inward[..1]))
}

/// Country: ISO 3166-1 alpha-2. Meta wants it lowercase; Google (region_code) uppercase, as in
/// its examples ("US").
fn country(platform: Platform, text: &str) -> Result<String, String> {
    let code = region(text).map(|id| id.as_ref().to_string()).ok_or_else(|| {
        problem(Identifier::Country, "expected a two-letter ISO 3166-1 country code such as us or fr")
    })?;
    Ok(match platform {
        Platform::Meta => code.to_ascii_lowercase(),
        _ => code,
    })
}

/// Mobile ad id (IDFA or Android advertising id): a UUID, written with hyphens. Meta: "all
/// lowercase, and keep hyphens", not hashed; Snapchat and TikTok hash it (lowercase); LinkedIn's
/// GOOGLE_AID is lowercase. Google gives no case rule, so its case is kept. The all-zero id of a
/// device that limits ad tracking identifies nobody and is left out.
fn mobile_ad_id(platform: Platform, text: &str) -> Result<Option<String>, String> {
    let hex: String = text.chars().filter(|c| *c != '-').collect();
    let hyphens_ok = !text.contains('-')
        || (text.len() == 36 && text.char_indices().all(|(i, c)| (c == '-') == matches!(i, 8 | 13 | 18 | 23)));
    if hex.len() != 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) || !hyphens_ok {
        return Err(problem(
            Identifier::MobileAdId,
            "expected an IDFA or Android advertising id (a UUID such as 6d92078a-8246-4ba4-ae5b-76104861e7dc)",
        ));
    }
    if hex.bytes().all(|b| b == b'0') {
        return Ok(None);
    }
    let uuid = format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32]);
    Ok(Some(if platform == Platform::Google { uuid } else { uuid.to_ascii_lowercase() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none() -> NormalizeOptions {
        NormalizeOptions::default()
    }

    fn with_country(code: &str) -> NormalizeOptions {
        NormalizeOptions { default_country: Some(code.into()) }
    }

    fn norm(platform: Platform, identifier: Identifier, raw: &str) -> String {
        normalize(platform, identifier, raw, &none()).unwrap().unwrap()
    }

    fn wire(platform: Platform, identifier: Identifier, raw: &str) -> String {
        wire_value(platform, identifier, raw, &none()).unwrap().unwrap()
    }

    // Meta, "Hashing" section: hash("sha256", "mary@example.com") and hash("sha256", "15559876543").
    // https://developers.facebook.com/documentation/ads-commerce/marketing-api/audiences/guides/custom-audiences
    #[test]
    fn meta_documented_hashes() {
        assert_eq!(sha256_hex("mary@example.com"), "f1904cf1a9d73a55fa5de0ac823c4403ded71afd4c3248d00bdcd0866552bb79");
        assert_eq!(sha256_hex("15559876543"), "1ef970831d7963307784fa8688e8fce101a15685d62aa765fed23f3a2c576a4e");
        // The same digest through the e-mail rules (trim, lowercase).
        assert_eq!(
            wire(Platform::Meta, Identifier::Email, "  Mary@Example.COM "),
            "f1904cf1a9d73a55fa5de0ac823c4403ded71afd4c3248d00bdcd0866552bb79"
        );
    }

    // Meta, Business Help "How to format a customer list" phone examples: "1-234-567-8910",
    // "12345678910", "+44 844 412 4653" (https://www.facebook.com/business/help/2082575038703844).
    // Meta's API table: "Remove symbols, letters, and any leading zeroes", with the country code.
    #[test]
    fn meta_phones_are_digits_with_country_code() {
        assert_eq!(norm(Platform::Meta, Identifier::Phone, "1-234-567-8910"), "12345678910");
        assert_eq!(norm(Platform::Meta, Identifier::Phone, "12345678910"), "12345678910");
        assert_eq!(norm(Platform::Meta, Identifier::Phone, "+44 844 412 4653"), "448444124653");
        assert_eq!(norm(Platform::Meta, Identifier::Phone, "0044 844 412 4653"), "448444124653");
        // National form with a default country.
        let fr = with_country("FR");
        assert_eq!(
            normalize(Platform::Meta, Identifier::Phone, "06 12 34 56 78", &fr).unwrap().unwrap(),
            "33612345678"
        );
        assert_eq!(
            wire_value(Platform::Meta, Identifier::Phone, "06 12 34 56 78", &fr).unwrap().unwrap(),
            sha256_hex("33612345678")
        );
        // National form without one cannot be placed.
        let error = normalize(Platform::Meta, Identifier::Phone, "06 12 34 56 78", &none()).unwrap_err();
        assert!(error.starts_with("phone: ") && error.contains("default_country"), "{error}");
    }

    // Google Data Manager API, "Format user data":
    // https://developers.google.com/data-manager/api/get-started/formatting
    // "cloudy.sanfrancisco+shopping@gmail.com → cloudysanfrancisco@gmail.com",
    // "user.name+NYC@Example.com → user.name+nyc@example.com", "(800)555-0100 → +18005550100".
    #[test]
    fn google_documented_examples() {
        assert_eq!(
            norm(Platform::Google, Identifier::Email, "cloudy.sanfrancisco+shopping@gmail.com"),
            "cloudysanfrancisco@gmail.com"
        );
        assert_eq!(norm(Platform::Google, Identifier::Email, "user.name+NYC@Example.com"), "user.name+nyc@example.com");
        assert_eq!(norm(Platform::Google, Identifier::Email, "J.Doe@GoogleMail.com"), "jdoe@googlemail.com");
        let us = with_country("US");
        assert_eq!(
            normalize(Platform::Google, Identifier::Phone, "(800)555-0100", &us).unwrap().unwrap(),
            "+18005550100"
        );
        assert_eq!(
            wire_value(Platform::Google, Identifier::Phone, "(800)555-0100", &us).unwrap().unwrap(),
            sha256_hex("+18005550100")
        );
        // Other platforms keep dots and +suffixes.
        assert_eq!(norm(Platform::Meta, Identifier::Email, "j.doe+ads@gmail.com"), "j.doe+ads@gmail.com");
    }

    // TikTok, "How to create a Custom Audience with a customer file" (supported IDs and formats):
    // https://ads.tiktok.com/help/article/how-to-create-a-custom-audience-with-a-customer-file
    // Email "janedoe@gmail.com" → d6117306…; phone "INTL: +37493828222" → 65b7e6dc…, which is the
    // digest of "37493828222" (no "+"; the article's older table also removes the "+" and normalises
    // "(657)777-0000" to "16577770000"); MAID "5f3a2b18-9c4d-4e7f-b8e2-17d3a1e69b25" → 83dc3f5f….
    #[test]
    fn tiktok_documented_hashes() {
        assert_eq!(
            wire(Platform::TikTok, Identifier::Email, " JaneDoe@Gmail.com"),
            "d6117306485ed0e50afab3ac871e98f81699151f30281527d63ff5f233656c69"
        );
        assert_eq!(
            wire(Platform::TikTok, Identifier::Phone, "+37493828222"),
            "65b7e6dcf6f4310f8d7cbfbd78289a753062fb054d6664fb9aaac5df66a422d4"
        );
        assert_eq!(norm(Platform::TikTok, Identifier::Phone, "374-93-828222"), "37493828222");
        let us = with_country("US");
        assert_eq!(
            normalize(Platform::TikTok, Identifier::Phone, "(657)777-0000", &us).unwrap().unwrap(),
            "16577770000"
        );
        assert_eq!(
            wire(Platform::TikTok, Identifier::MobileAdId, "5F3A2B18-9C4D-4E7F-B8E2-17D3A1E69B25"),
            "83dc3f5f32b9472613b0f038d36f22585a609d018af6f6067f50da318bf354bd"
        );
    }

    #[test]
    fn snapchat_and_linkedin_rules() {
        assert_eq!(wire(Platform::Snapchat, Identifier::Phone, "+1 (650) 253-0000"), sha256_hex("16502530000"));
        assert_eq!(wire(Platform::LinkedIn, Identifier::Email, "Mike@Example.com"), sha256_hex("mike@example.com"));
        // GOOGLE_AID is a plain device id, lowercase, as LinkedIn documents it.
        assert_eq!(
            wire(Platform::LinkedIn, Identifier::MobileAdId, "6D92078A-8246-4BA4-AE5B-76104861E7DC"),
            "6d92078a-8246-4ba4-ae5b-76104861e7dc"
        );
        // LinkedIn takes names and country only unhashed, so Sluice does not send them.
        let linkedin: Vec<Identifier> =
            Identifier::ALL.into_iter().filter(|i| supports(Platform::LinkedIn, *i)).collect();
        assert_eq!(linkedin, [Identifier::Email, Identifier::MobileAdId]);
        for identifier in linkedin {
            assert!(is_hashed(Platform::LinkedIn, identifier) || identifier == Identifier::MobileAdId, "{identifier}");
        }
        let error = wire_value(Platform::LinkedIn, Identifier::FirstName, "Mike", &none()).unwrap_err();
        assert_eq!(error, "first_name: LinkedIn does not match audience members on first_name");
        assert!(wire_value(Platform::LinkedIn, Identifier::Country, "us", &none()).is_err());
        let error = wire_value(Platform::Snapchat, Identifier::FirstName, "Mike", &none()).unwrap_err();
        assert_eq!(error, "first_name: Snapchat does not match audience members on first_name");
    }

    // Meta's normalisation table, row by row.
    #[test]
    fn meta_table() {
        use Identifier::*;
        let meta = |identifier, raw| norm(Platform::Meta, identifier, raw);
        assert_eq!(meta(FirstName, " Mary-Ann "), "maryann");
        assert_eq!(meta(LastName, "O'Brien"), "obrien");
        assert_eq!(meta(FirstName, "Émilie"), "émilie", "FN/LN keep special characters in UTF-8");
        assert_eq!(meta(Gender, "Female"), "f");
        assert_eq!(meta(Gender, "M"), "m");
        assert_eq!(normalize(Platform::Meta, Gender, "unknown", &none()).unwrap(), None);
        assert_eq!(meta(DateOfBirth, "1990-07-04"), "19900704");
        assert_eq!(meta(DateOfBirth, "19900704"), "19900704");
        assert_eq!(meta(DateOfBirth, "1990-07-04T00:00:00.000000Z"), "19900704");
        assert_eq!(meta(City, "San Francisco"), "sanfrancisco");
        assert_eq!(meta(City, "Zürich"), "zurich");
        assert_eq!(meta(State, "CA"), "ca");
        assert_eq!(meta(State, "New York"), "ny");
        assert_eq!(meta(State, "Île-de-France"), "iledefrance");
        assert_eq!(meta(Zip, "94105-1234"), "94105");
        assert_eq!(meta(Zip, "941051234"), "94105");
        assert_eq!(meta(Zip, "SW1A 1AA"), "sw1a1", "UK: area/district/sector");
        assert_eq!(meta(Zip, "75008"), "75008");
        assert_eq!(meta(Country, "US"), "us");
        assert_eq!(meta(Country, "uk"), "gb");
        assert_eq!(meta(MobileAdId, "6D92078A-8246-4BA4-AE5B-76104861E7DC"), "6d92078a-8246-4ba4-ae5b-76104861e7dc");
        assert_eq!(meta(ExternalId, " Loyalty-00042 "), "Loyalty-00042");
    }

    #[test]
    fn meta_hashes_all_but_mobile_ad_ids() {
        use Identifier::*;
        assert_eq!(
            wire(Platform::Meta, MobileAdId, "6D92078A-8246-4BA4-AE5B-76104861E7DC"),
            "6d92078a-8246-4ba4-ae5b-76104861e7dc",
            "Meta: MADID \"Do not hash\""
        );
        assert_eq!(wire(Platform::Meta, ExternalId, "Loyalty-00042"), sha256_hex("Loyalty-00042"));
        assert_eq!(wire(Platform::Meta, Zip, "94105-1234"), sha256_hex("94105"));
        assert_eq!(
            wire(Platform::Meta, DateOfBirth, "1990-07-04"),
            [sha256_hex("1990"), sha256_hex("07"), sha256_hex("04")].join(",")
        );
        // Google sends region and postal codes unhashed.
        assert_eq!(wire(Platform::Google, Country, "fr"), "FR");
        assert_eq!(wire(Platform::Google, Zip, " SW1A  1AA "), "SW1A 1AA");
        assert_eq!(
            wire(Platform::Google, MobileAdId, "6D92078A-8246-4BA4-AE5B-76104861E7DC"),
            "6D92078A-8246-4BA4-AE5B-76104861E7DC"
        );
    }

    #[test]
    fn already_hashed_values_pass_through_lowercased() {
        let digest = sha256_hex("mary@example.com");
        let upper = digest.to_ascii_uppercase();
        for platform in [Platform::Meta, Platform::Google, Platform::TikTok, Platform::LinkedIn, Platform::Snapchat] {
            for identifier in Identifier::ALL {
                if !supports(platform, identifier) || !is_hashed(platform, identifier) {
                    continue;
                }
                if platform == Platform::Meta && identifier == Identifier::DateOfBirth {
                    let three = format!("{upper},{upper}, {upper}");
                    assert_eq!(
                        wire_value(platform, identifier, &three, &none()).unwrap().unwrap(),
                        [digest.as_str(); 3].join(",")
                    );
                    assert!(wire_value(platform, identifier, &upper, &none()).is_err());
                    continue;
                }
                assert_eq!(
                    wire_value(platform, identifier, &format!(" {upper} "), &none()).unwrap().as_deref(),
                    Some(digest.as_str()),
                    "{platform} {identifier}"
                );
            }
        }
        // A digest where the platform wants plain text is refused, not sent as if it were plain.
        let error = wire_value(Platform::Meta, Identifier::MobileAdId, &digest, &none()).unwrap_err();
        assert!(error.contains("unhashed"), "{error}");
    }

    #[test]
    fn blanks_are_none() {
        for platform in [Platform::Meta, Platform::Google, Platform::TikTok, Platform::LinkedIn, Platform::Snapchat] {
            for identifier in Identifier::ALL.into_iter().filter(|i| supports(platform, *i)) {
                assert_eq!(wire_value(platform, identifier, "  \t", &none()).unwrap(), None);
            }
        }
        assert_eq!(
            wire_value(Platform::Meta, Identifier::MobileAdId, "00000000-0000-0000-0000-000000000000", &none())
                .unwrap(),
            None,
            "the limit-ad-tracking id identifies nobody"
        );
    }

    /// Values of every identifier in forms people type, for the property tests below.
    fn samples(identifier: Identifier) -> Vec<&'static str> {
        use Identifier::*;
        match identifier {
            Email => vec!["Mary@Example.com", " j.doe+ads@GMAIL.com ", "élodie@exemple.fr", "a.b.c@googlemail.com"],
            Phone => vec![
                "+1 (650) 253-0000",
                "+44 20 7183 8750",
                "+33 6 12 34 56 78",
                "0044 20 7183 8750",
                "+81 3-1234-5678",
            ],
            FirstName => vec!["Mary-Ann", "  Émilie ", "Dr Jean Luc", "O'Neil"],
            LastName => vec!["Smith Jr.", "de la Fontaine", "Ó Súilleabháin"],
            Gender => vec!["F", "male", "Woman"],
            DateOfBirth => vec!["1990-07-04", "2000/02/29", "19851231", "1970.01.01"],
            City => vec!["San Francisco", "Zürich", "Saint-Étienne"],
            State => vec!["California", "NY", "Île-de-France"],
            Zip => vec!["94105-1234", "SW1A 1AA", "75008", "100-0001"],
            Country => vec!["US", "fr", "uk"],
            MobileAdId => vec!["6D92078A-8246-4BA4-AE5B-76104861E7DC", "aece52e703ee455ab3c4e57283966239"],
            ExternalId => vec![" Loyalty-00042 ", "crm:42"],
        }
    }

    #[test]
    fn normalising_a_normalised_value_changes_nothing() {
        let options = [none(), with_country("US"), with_country("FR"), with_country("JP")];
        for platform in [Platform::Meta, Platform::Google, Platform::TikTok, Platform::LinkedIn, Platform::Snapchat] {
            for identifier in Identifier::ALL.into_iter().filter(|i| supports(platform, *i)) {
                for raw in samples(identifier) {
                    for option in &options {
                        let once = normalize(platform, identifier, raw, option)
                            .unwrap_or_else(|e| panic!("{platform} {identifier}: {e}"))
                            .unwrap();
                        let twice = normalize(platform, identifier, &once, option).unwrap().unwrap();
                        assert_eq!(once, twice, "{platform} {identifier} with {option:?}");
                        let split_date = platform == Platform::Meta && identifier == Identifier::DateOfBirth;
                        if is_hashed(platform, identifier) && !split_date {
                            assert_eq!(
                                wire_value(platform, identifier, raw, option).unwrap().unwrap(),
                                sha256_hex(&once)
                            );
                        }
                    }
                }
            }
        }
    }

    /// A small deterministic generator (xorshift), so the generated cases are the same every run.
    struct Cases(u64);

    impl Cases {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn text(&mut self, alphabet: &[&str], min: usize, max: usize) -> String {
            let len = min + (self.next() as usize) % (max - min + 1);
            (0..len).map(|_| alphabet[(self.next() as usize) % alphabet.len()]).collect()
        }
    }

    const ALPHABET: [&str; 24] = [
        "a", "B", "z", "Q", "e", "é", "Ü", "ß", "-", ".", "'", " ", "  ", "\t", "7", "0", "+", "(", ")", "@", "ø", "Ł",
        "x", "_",
    ];

    #[test]
    fn generated_values_are_idempotent_and_errors_never_hold_them() {
        let mut cases = Cases(0x5eed_1234_abcd_9876);
        let options = [none(), with_country("US"), with_country("DE")];
        for round in 0..4000 {
            let platform =
                [Platform::Meta, Platform::Google, Platform::TikTok, Platform::LinkedIn, Platform::Snapchat][round % 5];
            let identifier = Identifier::ALL[(cases.next() as usize) % Identifier::ALL.len()];
            if !supports(platform, identifier) {
                continue;
            }
            // Mostly plausible values in varied spellings, and one in four pure noise; "Zq9" is a
            // marker no message could contain by chance.
            let digits = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
            let separators = ["", "", " ", "-", ".", "(", ")"];
            let raw = match (identifier, cases.next() % 4) {
                (_, 0) => format!("Zq9{}", cases.text(&ALPHABET, 3, 20)),
                (Identifier::Email, _) => {
                    format!("{}Zq9@{}.com", cases.text(&ALPHABET, 1, 12), cases.text(&["x", "y", "-"], 1, 6))
                }
                (Identifier::Phone, _) => {
                    let prefixes =
                        ["+1 650 2", "+33 6", "+49 151 ", "+44 7911 ", "+81 90", "0033 6", "+43 664 ", "+32 470 "];
                    let prefix = prefixes[(cases.next() as usize) % prefixes.len()];
                    let body: String = (0..8)
                        .map(|_| format!("{}{}", cases.text(&separators, 0, 1), cases.text(&digits, 1, 1)))
                        .collect();
                    // NANP numbers have 7 digits after the area code and exchange's first digit.
                    let body = if prefix.starts_with("+1") { body[..body.len() - 1].to_string() } else { body };
                    format!("{prefix}{body}")
                }
                (Identifier::DateOfBirth, _) => {
                    let year = 1900 + cases.next() % 120;
                    let (month, day) = (1 + cases.next() % 12, 1 + cases.next() % 28);
                    let separator = ["-", "/", ".", ""][(cases.next() as usize) % 4];
                    format!("{year}{separator}{month:02}{separator}{day:02}")
                }
                (Identifier::Country, _) => cases.text(&["us", "FR", " gb ", "De", "jp", "Uk"], 1, 1),
                (Identifier::Gender, _) => cases.text(&["F", "m", " Male", "woman", "unknown"], 1, 1),
                (Identifier::MobileAdId, _) => {
                    let hex = ["a", "B", "c", "D", "e", "F", "0", "1", "9", "5"];
                    let groups: Vec<String> = [8, 4, 4, 4, 12].iter().map(|n| cases.text(&hex, *n, *n)).collect();
                    groups.join(if cases.next() & 1 == 0 { "-" } else { "" })
                }
                _ => format!("Zq9{}", cases.text(&ALPHABET, 3, 20)),
            };
            let option = &options[round % options.len()];
            match normalize(platform, identifier, &raw, option) {
                Ok(Some(once)) => {
                    let twice = normalize(platform, identifier, &once, option);
                    if twice != Ok(Some(once.clone()))
                        && identifier == Identifier::Phone
                        && platform != Platform::Google
                    {
                        // The one documented exception: digits that are both a foreign number
                        // with its country code and a valid national number of a default country
                        // that writes national numbers bare (NANP), are read as national.
                        let region = default_region(option).unwrap().expect("ambiguity needs a default country");
                        assert_ne!(trunk_prefix(region), Some("0"), "{platform} {raw:?} with {option:?}");
                        assert!(phonenumber::parse(Some(region), &once).is_ok_and(|n| phonenumber::is_valid(&n)));
                        continue;
                    }
                    assert_eq!(twice, Ok(Some(once.clone())), "{platform} {identifier} {raw:?}");
                }
                Ok(None) => {}
                Err(error) => {
                    assert!(error.starts_with(&format!("{identifier}: ")), "{error}");
                    assert!(!error.contains(raw.trim()) && !error.contains("Zq9"), "{error} leaks {raw:?}");
                }
            }
        }
    }

    #[test]
    fn errors_name_the_field_but_never_the_value() {
        use Identifier::*;
        let bad: [(Identifier, &str); 12] = [
            (Email, "qwerty-not-an-address"),
            (Email, "zed@localhost"),
            (Phone, "qwerty-zz"),
            (Phone, "+999 1234 5678"),
            (Phone, "5551234567890123"),
            (FirstName, "12345-678"),
            (Gender, "qwertyuiop"),
            (DateOfBirth, "07/04/1990"),
            (DateOfBirth, "1850-01-01"),
            (DateOfBirth, "2001-02-29"),
            (Country, "Qwerty"),
            (MobileAdId, "qwerty-1234-zz"),
        ];
        for (identifier, raw) in bad {
            let error = wire_value(Platform::Meta, identifier, raw, &none()).unwrap_err();
            assert!(error.starts_with(&format!("{identifier}: ")), "{error}");
            assert!(!error.contains(raw) && !error.contains(raw.trim()), "{error} leaks the value");
        }
        let bad_default = NormalizeOptions { default_country: Some("Qwertyland".into()) };
        let error = wire_value(Platform::Google, Phone, "0612345678", &bad_default).unwrap_err();
        assert!(error.contains("default_country") && !error.contains("Qwertyland"), "{error}");
        assert!(wire_value(Platform::Meta, City, "東京", &none()).unwrap_err().starts_with("city: "));
    }

    #[test]
    fn field_names_round_trip() {
        for identifier in Identifier::ALL {
            assert_eq!(Identifier::from_field(identifier.field_name()), Some(identifier));
        }
        assert_eq!(Identifier::from_field("e-mail"), None);
        assert!(Identifier::ALL.windows(2).all(|w| w[0] < w[1]), "ALL is in declaration order");
    }

    #[test]
    fn the_current_year_is_plausible() {
        let year = current_year();
        assert!((2024..2200).contains(&year), "{year}");
        assert!(birth_date(&format!("{year}-01-01")).is_ok());
        assert!(birth_date(&format!("{}-01-01", year + 1)).is_err());
    }
}
